"""Rule 4: corrections are followed; the client ends with exactly one follow-up, on the session
still marked, and never receives the same step twice."""

from __future__ import annotations

from tests.stories_rules import (
    JANE,
    OMAR,
    THERAPIST,
    add_calendar,
    call_tasks,
    configure,
    journal,
    local,
    on,
    put,
    session,
    team,
    weekly,
)


def test_the_marker_moved_to_the_next_day_moves_the_follow_up(practice, capsys):
    """Jane came on Monday and missed Tuesday: the therapist moves the marker in one edit."""
    monday, tuesday = session("j-mon", 2, 10, "Jane Doe"), session("j-tue", 3, 14, "Jane Doe")
    practice.calendar([team(), monday, tuesday])
    practice.once(local(2026, 10, 30, 8))
    monday.summary = "Jane Doe no-show"
    practice.calendar([team(), monday, tuesday])
    practice.once(local(2026, 11, 2, 11))
    monday.summary, tuesday.summary = "Jane Doe", "Jane Doe no-show"
    practice.calendar([team(), monday, tuesday])
    for moment in (local(2026, 11, 3, 15), local(2026, 11, 4, 14, 5), local(2026, 11, 10, 14, 5)):
        practice.once(moment)
    assert [row[1:7] for row in journal(practice, capsys)] == [
        ("2026-11-02", "no_show", 1, "phone", "skipped", "withdrawn"),
        ("2026-11-02", "no_show", 2, "email", "skipped", "withdrawn"),
        ("2026-11-03", "no_show", 1, "phone", "sent", None),
        ("2026-11-03", "no_show", 2, "email", "sent", None)]
    tasks, emails = call_tasks(practice), practice.mails_to(JANE)
    assert len(tasks) == 1 and len(emails) == 1
    assert "Tuesday, November 3" in tasks[0] and "Tuesday, November 3" in emails[0]
    assert not any("November 2" in m for m in practice.mails())


def test_withdrawing_the_first_of_two_marked_occurrences_hands_over_to_the_second(practice, capsys):
    """A twice-weekly series ending this week, Jane invited by address; both occurrences marked,
    then Monday's mark withdrawn after its call task went: Thursday's follow-up takes over."""
    invite = [(JANE, "Jane Doe", "ACCEPTED")]
    series = weekly("jane-twice", 26, 10, "Session", attendees=invite,
                    rule="FREQ=WEEKLY;BYDAY=MO,TH;UNTIL=20261106T000000Z")
    practice.calendar([team(), series])
    practice.once(local(2026, 10, 30, 8))
    practice.calendar([team(), series, on(series, 2, summary="Session no-show")])
    practice.once(local(2026, 11, 2, 11))
    practice.once(local(2026, 11, 3, 10, 5))
    practice.calendar([team(), series, on(series, 2, summary="Session no-show"), on(series, 5, summary="Session DNA")])
    practice.once(local(2026, 11, 5, 11))
    assert len(journal(practice, capsys)) == 2                     # Thursday's waits behind Monday's
    practice.calendar([team(), series, on(series, 5, summary="Session DNA")])
    for moment in (local(2026, 11, 6, 9), local(2026, 11, 6, 10, 5), local(2026, 11, 12, 10, 5)):
        practice.once(moment)
    assert [row[1:7] for row in journal(practice, capsys)] == [
        ("2026-11-02", "no_show", 1, "phone", "sent", None),
        ("2026-11-02", "no_show", 2, "email", "skipped", "withdrawn"),
        ("2026-11-05", "no_show", 1, "phone", "sent", None),
        ("2026-11-05", "no_show", 2, "email", "sent", None)]
    emails = practice.mails_to(JANE)
    assert len(emails) == 1 and "Thursday, November 5" in emails[0]
    tasks = call_tasks(practice)
    assert sorted("Thursday, November 5" in t for t in tasks) == [False, True]     # the corrected call task


def test_a_correction_never_repeats_an_email_the_client_already_received(practice, capsys):
    """Email first in this practice. Omar's Monday (main calendar) and Wednesday (group calendar)
    are both marked; Monday's email has gone when its mark is withdrawn: Wednesday's follow-up
    does not send a second email, only the call task for the therapist."""
    configure(practice, '[cadence]\nsteps = [\n  { channel = "email", after = "1 business day", template = "email_followup" },\n'
                        '  { channel = "phone", after = "5 days", template = "phone_call" },\n]')
    add_calendar(practice, "group")
    invite = [(OMAR, "Omar Haddad", "ACCEPTED")]
    monday = session("o-mon", 2, 15, "Session", attendees=invite)
    wednesday = session("o-wed", 4, 15, "Group", attendees=invite)
    practice.calendar([team(), monday])
    put(practice, "group", [team(), wednesday])
    practice.once(local(2026, 10, 30, 8))
    monday.categories = "no-show"
    practice.calendar([team(), monday])
    practice.once(local(2026, 11, 2, 16))
    practice.once(local(2026, 11, 3, 15, 5))                   # Monday's email goes
    wednesday.categories = "no-show"
    put(practice, "group", [team(), wednesday])
    practice.once(local(2026, 11, 4, 16))
    monday.categories = ""
    practice.calendar([team(), monday])
    for day in (5, 9, 10, 16):
        practice.once(local(2026, 11, day, 15, 5))
    assert [row[1:7] for row in journal(practice, capsys)] == [
        ("2026-11-02", "no_show", 1, "email", "sent", None),
        ("2026-11-02", "no_show", 2, "phone", "skipped", "withdrawn"),
        ("2026-11-04", "no_show", 1, "email", "skipped", "already_sent"),
        ("2026-11-04", "no_show", 2, "phone", "sent", None)]
    assert len(practice.mails_to(OMAR)) == 1
    tasks = call_tasks(practice)
    assert len(tasks) == 1 and "Wednesday, November 4" in tasks[0]
    assert THERAPIST in tasks[0]


def test_withdrawing_the_second_of_two_marks_leaves_the_first_follow_up_alone(practice, capsys):
    """Tuesday's mark was the mistake: Monday's follow-up carries on, and since Jane did come
    on Tuesday, its email stops there (she is coming back)."""
    monday, tuesday = session("j-mon", 2, 10, "Jane Doe"), session("j-tue", 3, 14, "Jane Doe")
    practice.calendar([team(), monday, tuesday])
    practice.once(local(2026, 10, 30, 8))
    monday.summary = tuesday.summary = "Jane Doe no-show"
    practice.calendar([team(), monday, tuesday])
    practice.once(local(2026, 11, 3, 15))
    tuesday.summary = "Jane Doe"
    practice.calendar([team(), monday, tuesday])
    for moment in (local(2026, 11, 3, 16), local(2026, 11, 9, 10, 5), local(2026, 11, 10, 14, 5)):
        practice.once(moment)
    assert [row[1:7] for row in journal(practice, capsys)] == [
        ("2026-11-02", "no_show", 1, "phone", "sent", None),
        ("2026-11-02", "no_show", 2, "email", "skipped", "rebooked")]
    assert len(call_tasks(practice)) == 1 and practice.mails_to(JANE) == []


def test_a_session_retitled_to_another_client_withdraws_the_first_clients_follow_up(practice, capsys):
    """The therapist had typed the wrong name: the session was Omar's, not Jane's."""
    slot = session("s1", 3, 10, "Jane Doe")
    practice.calendar([team(), slot])
    practice.once(local(2026, 11, 2, 8))
    slot.summary = "Jane Doe no-show"
    practice.calendar([team(), slot])
    practice.once(local(2026, 11, 3, 11))
    slot.summary = "Omar Haddad no-show"
    practice.calendar([team(), slot])
    for day in (4, 10):
        practice.once(local(2026, 11, day, 10, 5))
    assert [(r[0], r[5], r[6]) for r in journal(practice, capsys)] == [
        ("Jane Doe", "skipped", "withdrawn"), ("Jane Doe", "skipped", "withdrawn")]
    assert practice.mails_to(JANE) == [] and call_tasks(practice) == []


def test_a_session_that_no_longer_tells_whose_it_is_holds_the_step(practice, capsys):
    slot = session("s1", 3, 10, "Jane Doe")
    practice.calendar([team(), slot])
    practice.once(local(2026, 11, 2, 8))
    slot.summary = "Jane Doe no-show"
    practice.calendar([team(), slot])
    practice.once(local(2026, 11, 3, 11))
    slot.summary = "Jane Doe / Omar Haddad no-show"
    practice.calendar([team(), slot])
    practice.once(local(2026, 11, 4, 10, 5))
    assert [r[5] for r in journal(practice, capsys)] == ["planned", "planned"]
    assert practice.mails() == []
