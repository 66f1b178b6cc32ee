"""Rule 6: the cadence keeps its spacing when a trigger is noticed late or the service was down;
the call task and the client email never go out together."""

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
    put,
    session,
    team,
    weekly,
)


def _days(practice, moments) -> list[tuple[int, int]]:
    """Run a cycle at each moment; (call tasks, client emails) that each cycle added."""
    def counts() -> tuple[int, int]:
        return len(call_tasks(practice)), len([m for m in practice.mails() if f"To: Ana Ruiz <{THERAPIST}>" not in m])

    out, before = [], counts()
    for moment in moments:
        practice.once(moment)
        now = counts()
        out.append((now[0] - before[0], now[1] - before[1]))
        before = now
    return out


def test_a_no_show_marked_ten_days_late_still_gets_call_first_and_email_six_days_later(practice, capsys):
    jane = session("j1", 3, 10, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    added = _days(practice, [local(2026, 11, day, 15, 30) for day in (13, 16, 17, 18, 19, 20)])
    assert added == [(1, 0), (0, 0), (0, 0), (0, 0), (0, 1), (0, 0)]
    steps = practice.status(capsys)
    assert [(s["due_at"], s["state"]) for s in steps] == [
        ("2026-11-13T15:30:00-05:00", "sent"), ("2026-11-19T15:30:00-05:00", "sent")]
    assert len(practice.mails_to(JANE)) == 1


def test_after_downtime_the_late_call_goes_and_the_email_waits_its_gap(practice, capsys):
    """The service was down from Tuesday to the next Wednesday, within max_lateness."""
    configure(practice, '[cadence]\nmax_lateness = "8 days"')
    jane = session("j1", 3, 10, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 3, 11))
    assert _days(practice, [local(2026, 11, 11, 9, 30)]) == [(1, 0)]
    assert [(r[4], r[5]) for r in journal(practice, capsys)] == [("phone", "sent"), ("email", "planned")]
    assert practice.status(capsys)[1]["due_at"] == "2026-11-17T09:30:00-05:00"
    assert _days(practice, [local(2026, 11, 12, 12), local(2026, 11, 17, 9, 35)]) == [(0, 0), (0, 1)]
    assert [(r[4], r[5], r[6]) for r in journal(practice, capsys)] == [("phone", "sent", None), ("email", "sent", None)]


def test_a_cancelled_occurrence_noticed_a_week_late_keeps_the_spacing(practice, capsys):
    """Omar's monthly group session (invited by address) lost an occurrence while the service was down."""
    add_calendar(practice, "group")
    monthly = weekly("omar-monthly", 12, 15, "Group", attendees=[(OMAR, "Omar Haddad", "ACCEPTED")],
                     rule="FREQ=MONTHLY;BYMONTHDAY=12")
    put(practice, "group", [team(), monthly])
    practice.calendar([team()])
    practice.once(local(2026, 11, 2, 8))
    monthly.exdates = [local(2026, 11, 12, 15)]
    put(practice, "group", [team(), monthly])
    added = _days(practice, [local(2026, 11, 19, 9), local(2026, 11, 19, 16), local(2026, 11, 24, 16),
                             local(2026, 11, 25, 9, 5)])
    assert added == [(1, 0), (0, 0), (0, 0), (0, 1)]
    steps = practice.status(capsys)
    assert [(s["trigger"], s["due_at"]) for s in steps] == [
        ("late_cancel", "2026-11-19T09:00:00-05:00"), ("late_cancel", "2026-11-25T09:00:00-05:00")]
    assert len(practice.mails_to(OMAR)) == 1


def test_a_friday_session_marked_late_spaces_the_email_by_the_cadences_gap(practice, capsys):
    """Friday 4 pm, marked the Monday ten days later before opening: call at 9, email four days on
    (1 business day after a Friday is Monday, 7 days is Friday: four days apart)."""
    jane = session("j1", 6, 16, "Jane Doe")
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 5, 8))
    jane.description = "DNA"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 16, 8))
    steps = practice.status(capsys)
    assert [s["due_at"] for s in steps] == ["2026-11-16T09:00:00-05:00", "2026-11-20T09:00:00-05:00"]
    assert practice.mails() == []
