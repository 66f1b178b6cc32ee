"""Rule 2: vanishing is a cancellation only for sessions that had not started yet; the breaker
counts every whole event that vanished, past ones included."""

from __future__ import annotations

from tests.stories_rules import (
    OMAR,
    THERAPIST,
    add_calendar,
    attention,
    call_tasks,
    configure,
    journal,
    local,
    put,
    session,
    team,
    weekly,
)


def test_a_feed_that_prunes_last_weeks_sessions_cancels_nothing(practice, capsys):
    """The practice suite publishes only recent days: last week's attended sessions drop out."""
    past = [session(f"p{d}", d, 10 + d % 5, who) for d, who in ((2, "Jane Doe"), (3, "Omar Haddad"), (4, "Mia Stone"))]
    practice.calendar([team(), *past])
    practice.once(local(2026, 11, 2, 8))
    for day in (3, 4, 5):
        practice.once(local(2026, 11, day, 18))
    practice.calendar([team()])                   # the feed now starts today
    for day in (9, 10, 16, 17):
        practice.once(local(2026, 11, day, 12))
    assert journal(practice, capsys) == []
    assert practice.mails() == []
    assert "DEGRADED" not in attention(practice, capsys)


def test_a_weekly_series_whose_past_occurrences_are_pruned_is_still_booked(practice, capsys):
    """The series restarts in the feed from this week: the October occurrences Omar attended
    vanish, nothing is cancelled, and a real cancellation of a future occurrence is still seen
    (on the attendee's address; a short rebook window, so the next week does not cover it)."""
    configure(practice, '[detection]\nrebook_window = "3 days"')
    invite = [(OMAR, "Omar Haddad", "ACCEPTED"), (THERAPIST, "Ana Ruiz", "ACCEPTED")]
    series = weekly("omar-weekly", 1, 15, "Session", attendees=invite, rule="FREQ=WEEKLY;BYDAY=TH")
    practice.calendar([team(), series])
    for moment in (local(2026, 10, 19, 8), local(2026, 10, 22, 16), local(2026, 10, 29, 16)):
        practice.once(moment)
    pruned = weekly("omar-weekly", 5, 15, "Session", month=11, attendees=invite, rule="FREQ=WEEKLY;BYDAY=TH")
    practice.calendar([team(), pruned])
    practice.once(local(2026, 11, 3, 8))
    assert journal(practice, capsys) == []
    pruned.exdates = [local(2026, 11, 26, 15)]
    practice.calendar([team(), pruned])
    practice.once(local(2026, 11, 4, 8))
    assert [row[1:6] for row in journal(practice, capsys)] == [
        ("2026-11-26", "cancelled", 1, "phone", "planned"), ("2026-11-26", "cancelled", 2, "email", "planned")]
    assert practice.mails() == []


def test_a_session_deleted_during_or_after_it_took_place_is_no_cancellation(practice, capsys):
    """Two calendars: Jane's session tidied away while it ran, Omar's future one deleted."""
    add_calendar(practice, "group")
    jane, omar = session("j1", 3, 10, "Jane Doe"), session("o1", 12, 15, "Omar Haddad")
    practice.calendar([team(), jane])
    put(practice, "group", [team(), omar])
    practice.once(local(2026, 11, 2, 8))
    practice.once(local(2026, 11, 3, 10, 20))     # seen while it runs
    practice.calendar([team()])
    put(practice, "group", [team()])
    for day in (4, 5, 13, 19):
        practice.once(local(2026, 11, day, 15, 30))
    assert journal(practice, capsys) == [
        ("Omar Haddad", "2026-11-12", "cancelled", 1, "phone", "sent", None),
        ("Omar Haddad", "2026-11-12", "cancelled", 2, "email", "sent", None)]
    assert len(call_tasks(practice)) == 1 and len(practice.mails_to(OMAR)) == 1


def test_a_session_that_vanished_before_it_started_is_cancelled_even_if_noticed_late(practice, capsys):
    """The service was down across Omar's session; it was gone before it started: a late cancel."""
    omar = session("o1", 10, 15, "Omar Haddad")
    practice.calendar([team(), omar])
    practice.once(local(2026, 11, 9, 8))
    practice.calendar([team()])
    practice.once(local(2026, 11, 11, 9))
    assert [row[2:6] for row in journal(practice, capsys)] == [
        ("late_cancel", 1, "phone", "planned"), ("late_cancel", 2, "email", "planned")]


def test_a_feed_that_drops_history_and_future_alike_is_held(practice, capsys):
    """Eight past sessions and one of two upcoming ones vanish at once: the feed is broken,
    not a cancellation (only one upcoming event: the upcoming share alone would not trip)."""
    names = ["Jane Doe", "Omar Haddad", "Mia Stone"]
    past = [session(f"p{i}", 2 + i, 9 + i % 4, names[i % 3]) for i in range(8)]
    upcoming = [session("u1", 16, 15, "Omar Haddad"), session("u2", 17, 15, "Jane Doe")]
    practice.calendar([team(), *past, *upcoming])
    practice.once(local(2026, 11, 2, 8))
    practice.once(local(2026, 11, 10, 18))
    practice.calendar([team(), upcoming[1]])
    practice.once(local(2026, 11, 11, 8))
    assert journal(practice, capsys) == []
    assert "DEGRADED" in _status_text(practice, capsys)
    for day in (17, 18, 23):
        practice.once(local(2026, 11, day, 12))
    assert practice.mails() == []


def _status_text(practice, capsys) -> str:
    capsys.readouterr()
    practice.cli("status")
    return capsys.readouterr().out
