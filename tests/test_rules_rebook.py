"""Rule 3: a booking is new only if it was not already on the calendar; "the client is coming
back" is decided in one place for the rebook window, the later steps and the digest."""

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


def test_a_monthly_occurrence_entering_the_horizon_does_not_stop_the_email(practice, capsys):
    """Omar's monthly session on the 3rd was always there; December's only comes into a
    three-week horizon after his cancelled one-off was followed up by a call."""
    configure(practice, '[detection]\nhorizon = "21 days"')
    monthly = weekly("omar-monthly", 3, 15, "Omar Haddad", rule="FREQ=MONTHLY;BYMONTHDAY=3")
    extra = session("o1", 12, 15, "Omar Haddad")
    practice.calendar([team(), monthly, extra])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), monthly])
    practice.once(local(2026, 11, 5, 9))
    practice.once(local(2026, 11, 13, 15, 5))     # the call; December 3 is now inside the horizon
    practice.once(local(2026, 11, 19, 15, 5))
    assert [row[2:7] for row in journal(practice, capsys)] == [
        ("cancelled", 1, "phone", "sent", None), ("cancelled", 2, "email", "sent", None)]
    assert len(call_tasks(practice)) == 1 and len(practice.mails_to(OMAR)) == 1


def test_the_next_weekly_session_within_the_rebook_window_stops_the_no_show_email(practice, capsys):
    """Jane (invited by address) keeps her weekly Tuesday: the well-being call goes, the email does not."""
    invite = [(JANE, "Jane Doe", "ACCEPTED")]
    series = weekly("jane-weekly", 6, 10, "Session", attendees=invite, rule="FREQ=WEEKLY;BYDAY=TU")
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), series, on(series, 3, summary="Session no-show")])
    practice.once(local(2026, 11, 3, 11))
    practice.once(local(2026, 11, 4, 10, 5))
    practice.once(local(2026, 11, 10, 10, 5))
    assert [row[3:7] for row in journal(practice, capsys)] == [
        (1, "phone", "sent", None), (2, "email", "skipped", "rebooked")]
    assert len(call_tasks(practice)) == 1 and practice.mails_to(JANE) == []


def test_a_new_booking_on_another_calendar_stops_the_later_step(practice, capsys):
    """Omar did not come; two days after the call he books a group session five weeks out."""
    add_calendar(practice, "group")
    put(practice, "group", [team()])
    omar = session("o1", 3, 15, "Omar Haddad")
    practice.calendar([team(), omar])
    practice.once(local(2026, 11, 2, 8))
    omar.summary = "Omar Haddad no-show"
    practice.calendar([team(), omar])
    practice.once(local(2026, 11, 3, 16))
    practice.once(local(2026, 11, 4, 15, 5))
    put(practice, "group", [team(), session("g1", 8, 18, "Omar Haddad", month=12)])
    practice.once(local(2026, 11, 6, 9))
    practice.once(local(2026, 11, 10, 15, 5))
    assert [row[3:7] for row in journal(practice, capsys)] == [
        (1, "phone", "sent", None), (2, "email", "skipped", "rebooked")]
    assert practice.mails_to(OMAR) == []


def test_a_calendar_added_later_brings_no_new_bookings(practice, capsys):
    """The therapist adds the group calendar after Omar's no-show: his group sessions were
    already booked there, so they say nothing about his coming back."""
    omar = session("o1", 3, 15, "Omar Haddad")
    practice.calendar([team(), omar])
    practice.once(local(2026, 11, 2, 8))
    omar.summary = "Omar Haddad no-show"
    practice.calendar([team(), omar])
    practice.once(local(2026, 11, 3, 16))
    practice.once(local(2026, 11, 4, 15, 5))
    add_calendar(practice, "group")
    put(practice, "group", [team(), weekly("g-omar", 8, 18, "Omar Haddad", month=12, rule="FREQ=MONTHLY")])
    practice.once(local(2026, 11, 5, 9))
    practice.once(local(2026, 11, 10, 15, 5))
    assert [row[3:7] for row in journal(practice, capsys)] == [
        (1, "phone", "sent", None), (2, "email", "sent", None)]
    assert len(practice.mails_to(OMAR)) == 1


def test_the_digest_does_not_list_a_call_to_a_client_who_is_coming_back(practice, capsys):
    """Omar cancelled and then booked again; Jane did not come. The morning digest lists only Jane's call."""
    omar, jane = session("o1", 12, 15, "Omar Haddad"), session("j1", 12, 10, "Jane Doe")
    practice.calendar([team(), omar, jane])
    practice.once(local(2026, 11, 2, 8))
    jane.summary = "Jane Doe no-show"
    practice.calendar([team(), jane])
    practice.once(local(2026, 11, 12, 11))
    practice.calendar([team(), jane, session("o2", 21, 15, "Omar Haddad", month=12)])
    practice.once(local(2026, 11, 12, 18))
    capsys.readouterr()
    assert practice.cli("digest", "--now", local(2026, 11, 13, 7, 30).isoformat()) == 0
    digest = next(m for m in practice.mails_to(THERAPIST) if "your day" in m)
    calls = digest.split("Calls to make today", 1)[1].split("\n\n", 1)[0]
    assert "Jane Doe" in calls and "Omar Haddad" not in calls
    practice.once(local(2026, 11, 13, 15, 5))
    steps = journal(practice, capsys)
    assert ("Omar Haddad", 1, "skipped", "rebooked") in [(r[0], r[3], r[5], r[6]) for r in steps]
    assert len(call_tasks(practice)) == 1 and "Subject: Call Jane\n" in call_tasks(practice)[0]

