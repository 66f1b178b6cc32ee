"""Rule 5: a session that is now in the future is not missed; a marked or cancelled session
dragged to a later date is a moved session, and no message names the old date."""

from __future__ import annotations

from tests.stories_rules import (
    JANE,
    OMAR,
    add_calendar,
    call_tasks,
    journal,
    local,
    on,
    put,
    session,
    team,
    weekly,
)


def test_a_marked_session_dragged_to_friday_is_moved_not_missed(practice, capsys):
    """Jane phoned: 'can we do Friday instead?' The therapist drags the marked event to Friday."""
    jane = session("j1", 3, 10, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 3, 11))
    moved = session("j1", 6, 10, "Jane Doe no-show")
    practice.calendar([team(), moved])
    for moment in (local(2026, 11, 3, 16), local(2026, 11, 4, 10, 5), local(2026, 11, 6, 12),
                   local(2026, 11, 10, 10, 5), local(2026, 11, 13, 12)):
        practice.once(moment)
    assert [row[1:7] for row in journal(practice, capsys)] == [
        ("2026-11-03", "no_show", 1, "phone", "skipped", "withdrawn"),
        ("2026-11-03", "no_show", 2, "email", "skipped", "withdrawn")]
    assert practice.mails() == []


def test_a_cancelled_monthly_occurrence_dragged_later_stops_before_the_email(practice, capsys):
    """Omar's monthly session was cancelled and followed up by a call; then the therapist drags
    the cancelled occurrence to the following week: the email (naming the 12th) never goes."""
    series = weekly("omar-monthly", 12, 15, "Omar Haddad", rule="FREQ=MONTHLY;BYMONTHDAY=12")
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), series, on(series, 12, status="CANCELLED")])
    practice.once(local(2026, 11, 5, 9))
    practice.once(local(2026, 11, 13, 15, 5))
    dragged = on(series, 12, status="CANCELLED", start=local(2026, 11, 20, 15))
    practice.calendar([team(), series, dragged])
    for day in (16, 19, 20, 23):
        practice.once(local(2026, 11, day, 15, 30))
    assert [row[2:7] for row in journal(practice, capsys)] == [
        ("cancelled", 1, "phone", "sent", None), ("cancelled", 2, "email", "skipped", "withdrawn")]
    assert len(call_tasks(practice)) == 1 and practice.mails_to(OMAR) == []


def test_a_declined_invitation_moved_to_a_later_date_is_withdrawn_before_the_call(practice, capsys):
    """On the group calendar, Jane (invited by address) declined; the therapist moves the session."""
    add_calendar(practice, "group")
    group = session("g1", 12, 11, "Group", attendees=[(JANE, "Jane Doe", "ACCEPTED")])
    put(practice, "group", [team(), group])
    practice.once(local(2026, 11, 2, 8))
    group.attendees = [(JANE, "Jane Doe", "DECLINED")]
    put(practice, "group", [team(), group])
    practice.once(local(2026, 11, 4, 8))
    assert [row[5] for row in journal(practice, capsys)] == ["planned", "planned"]
    later = session("g1", 24, 11, "Group", attendees=[(JANE, "Jane Doe", "DECLINED")])
    put(practice, "group", [team(), later])
    for day in (6, 13, 19, 25, 30):
        practice.once(local(2026, 11, day, 12))
    assert [row[5:7] for row in journal(practice, capsys)] == [("skipped", "withdrawn"), ("skipped", "withdrawn")]
    assert practice.mails() == []


def test_a_marked_session_dragged_to_its_real_earlier_date_is_followed_up_with_that_date(practice, capsys):
    """The event sat on Wednesday by mistake; Jane's missed session was Tuesday. Every message names Tuesday."""
    jane = session("j1", 4, 10, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 4, 11))
    practice.calendar([team(), session("j1", 3, 10, "Jane Doe no-show")])
    for moment in (local(2026, 11, 4, 15), local(2026, 11, 5, 10, 5), local(2026, 11, 11, 10, 5)):
        practice.once(moment)
    assert [row[1:6] for row in journal(practice, capsys)] == [
        ("2026-11-03", "no_show", 1, "phone", "sent"), ("2026-11-03", "no_show", 2, "email", "sent")]
    task, email = call_tasks(practice)[0], practice.mails_to(JANE)[0]
    assert "Tuesday, November 3" in task and "Tuesday, November 3" in email
    assert not any("November 4" in m for m in practice.mails())
