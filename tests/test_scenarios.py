"""End-to-end scenarios driven through `welcomeback once --now` over changing calendar files."""

from __future__ import annotations

import pytest

from tests.conftest import local
from tests.ics import Ev
from tests.stories import jane_no_show, team

JANE = "jane.doe@example.com"
OMAR = "omar.h@example.org"
THERAPIST = "ana@riverside.example"


def test_no_show_gets_call_then_email_then_stops(practice, capsys):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    session.summary = "Jane Doe - no-show"
    practice.calendar([team(), session])
    assert practice.once(local(2026, 11, 3, 11)) == 0
    steps = practice.status(capsys)
    assert [(s["step"], s["channel"], s["state"], s["trigger"]) for s in steps] == [
        (1, "phone", "planned", "no_show"), (2, "email", "planned", "no_show")]
    assert steps[0]["due_at"] == "2026-11-04T10:00:00-05:00"
    assert steps[1]["due_at"] == "2026-11-10T10:00:00-05:00"
    assert steps[0]["client"] == "Jane Doe"
    assert practice.mails() == []
    practice.once(local(2026, 11, 4, 10, 5))
    tasks = practice.mails_to(THERAPIST)
    assert len(tasks) == 1 and "Subject: Call Jane\n" in tasks[0] and "Phone: (555) 010-0201" in tasks[0]
    assert practice.mails_to(JANE) == []
    practice.once(local(2026, 11, 10, 10, 5))
    emails = practice.mails_to(JANE)
    assert len(emails) == 1 and "Subject: Checking in from Riverside Counselling" in emails[0]
    for day in range(11, 30):
        practice.once(local(2026, 11, day, 12))
    assert len(practice.mails()) == 2
    assert [s["state"] for s in practice.status(capsys)] == ["sent", "sent"]


def test_late_cancel_with_next_session_booked_is_a_reschedule(practice, capsys):
    series = Ev("jane-weekly", local(2026, 10, 6, 10), local(2026, 10, 6, 10, 50), "Jane Doe",
                rrule="FREQ=WEEKLY;BYDAY=TU")
    practice.calendar([series])
    practice.once(local(2026, 11, 2, 8))
    cancelled = Ev("jane-weekly", local(2026, 11, 10, 10), local(2026, 11, 10, 10, 50), "Jane Doe",
                   status="CANCELLED", recurrence_id=local(2026, 11, 10, 10))
    practice.calendar([series, cancelled])
    assert practice.once(local(2026, 11, 9, 20)) == 0
    for day in range(10, 25):
        practice.once(local(2026, 11, day, 12))
    assert practice.status(capsys) == []
    assert practice.mails() == []


def test_late_cancel_without_rebooking_starts_a_sequence(practice, capsys):
    session = Ev("o1", local(2026, 11, 10, 15), local(2026, 11, 10, 15, 50), "Omar Haddad")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.status = "CANCELLED"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 10, 9))
    steps = practice.status(capsys)
    assert {s["trigger"] for s in steps} == {"late_cancel"}
    assert len(steps) == 2


def test_deleted_single_event_is_a_cancellation(practice, capsys):
    session = Ev("o1", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team()])
    practice.once(local(2026, 11, 5, 9))
    steps = practice.status(capsys)
    assert [(s["trigger"], s["due_at"]) for s in steps] == [
        ("cancelled", "2026-11-13T15:00:00-05:00"), ("cancelled", "2026-11-19T15:00:00-05:00")]
    practice.once(local(2026, 11, 13, 15, 1))
    practice.once(local(2026, 11, 19, 15, 1))
    assert len(practice.mails_to(OMAR)) == 1 and len(practice.mails_to(THERAPIST)) == 1


def test_do_not_contact_client_is_never_contacted(practice, capsys):
    session = Ev("r1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Rosa Lind")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.categories = "no-show"
    practice.calendar([team(), session])
    for day in range(3, 20):
        practice.once(local(2026, 11, day, 12))
    steps = practice.status(capsys)
    assert steps and all(s["state"] == "skipped" and s["reason"] == "opted_out" for s in steps)
    assert practice.mails() == []


def test_series_ended_early_is_one_trigger_on_the_first_lost_session(practice, capsys):
    series = Ev("omar-weekly", local(2026, 10, 1, 15), local(2026, 10, 1, 15, 50), "Omar Haddad",
                rrule="FREQ=WEEKLY;BYDAY=TH")
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 2, 8))
    series.rrule = "FREQ=WEEKLY;BYDAY=TH;UNTIL=20261106T000000Z"
    practice.calendar([team(), series])
    practice.once(local(2026, 11, 6, 9))
    steps = practice.status(capsys)
    assert len(steps) == 2
    assert {s["session_start"] for s in steps} == {"2026-11-12T15:00:00-05:00"}


def test_historical_no_show_at_first_run_is_never_followed_up(practice, capsys):
    old = Ev("old", local(2026, 10, 27, 10), local(2026, 10, 27, 10, 50), "Jane Doe no-show")
    gone = Ev("gone", local(2026, 10, 28, 10), local(2026, 10, 28, 10, 50), "Omar Haddad", status="CANCELLED")
    practice.calendar([team(), old, gone])
    for day in range(2, 20):
        practice.once(local(2026, 11, day, 12))
    assert practice.status(capsys) == []
    assert practice.mails() == []


def test_rebook_between_phone_and_email_stops_the_email(practice, capsys):
    session = Ev("o1", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team()])
    practice.once(local(2026, 11, 5, 9))
    practice.once(local(2026, 11, 13, 15, 5))
    assert len(practice.mails_to(THERAPIST)) == 1
    new = Ev("o2", local(2026, 11, 24, 15), local(2026, 11, 24, 15, 50), "Omar Haddad")
    practice.calendar([team(), new])
    practice.once(local(2026, 11, 16, 9))
    practice.once(local(2026, 11, 19, 15, 5))
    steps = practice.status(capsys)
    assert [(s["state"], s["reason"]) for s in steps] == [("sent", None), ("skipped", "rebooked")]
    assert practice.mails_to(OMAR) == []


def test_dst_change_between_steps_keeps_the_wall_clock(practice, capsys):
    session = Ev("j1", local(2026, 10, 28, 10), local(2026, 10, 28, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    practice.once(local(2026, 10, 26, 8))
    session.description = "DNA"
    practice.calendar([team(), session])
    practice.once(local(2026, 10, 28, 11))
    steps = practice.status(capsys)
    assert steps[0]["due_at"] == "2026-10-29T10:00:00-04:00"
    assert steps[1]["due_at"] == "2026-11-04T10:00:00-05:00"   # 7 days on the wall clock across fall-back


def test_all_day_events_that_mention_a_client_are_ignored(practice, capsys):
    day = Ev("bd", local(2026, 11, 10), local(2026, 11, 11), "Jane Doe birthday", all_day=True)
    practice.calendar([team(), day])
    practice.once(local(2026, 11, 2, 8))
    day.status = "CANCELLED"
    day.summary = "Jane Doe birthday no-show"
    practice.calendar([team(), day])
    practice.once(local(2026, 11, 11, 12))
    practice.calendar([team()])
    practice.once(local(2026, 11, 12, 12))
    assert practice.status(capsys) == []


def test_event_matching_two_clients_is_reported_not_followed_up(practice, capsys):
    session = Ev("c1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Chris Park")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Chris Park no show"
    practice.calendar([team(), session])
    for day in range(3, 15):
        practice.once(local(2026, 11, day, 12))
    assert practice.status(capsys) == []
    assert practice.mails() == []
    capsys.readouterr()
    practice.cli("status")
    text = capsys.readouterr().out
    assert "ambiguous" in text and "several clients" in text


def test_the_same_cycle_twice_sends_nothing_twice(practice, capsys):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "NOSHOW Jane Doe"
    practice.calendar([team(), session])
    for _ in range(3):
        practice.once(local(2026, 11, 3, 11))
    for _ in range(3):
        practice.once(local(2026, 11, 4, 10, 30))
    assert len(practice.mails()) == 1
    assert len(practice.status(capsys)) == 2


def test_marker_removed_before_the_step_withdraws_it(practice, capsys):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe no-show")
    practice.calendar([team(), Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 3, 11))
    session.summary = "Jane Doe"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 4, 10, 30))
    assert [(s["state"], s["reason"]) for s in practice.status(capsys)] == [
        ("skipped", "withdrawn"), ("skipped", "withdrawn")]
    assert practice.mails() == []


@pytest.mark.shows_client_data  # prints whom it matched, the contact log or the status table
def test_reached_from_the_cli_stops_the_sequence(practice, capsys):
    jane_no_show(practice)
    practice.once(local(2026, 11, 4, 10, 30))
    assert practice.cli("reached", "Jane Doe") == 0
    practice.once(local(2026, 11, 10, 10, 30))
    assert [(s["state"], s["reason"]) for s in practice.status(capsys)] == [
        ("sent", None), ("skipped", "reached")]
    assert practice.mails_to(JANE) == []


def test_declined_attendee_is_a_cancellation_and_attendee_email_identifies(practice, capsys):
    """Neither the title nor the attendee's display name names anyone: only the address can."""
    session = Ev("a1", local(2026, 11, 12, 11), local(2026, 11, 12, 11, 50), "Session",
                 attendees=[(OMAR, "Guest", "ACCEPTED"), (THERAPIST, "Ana Ruiz", "ACCEPTED")])
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.attendees = [(OMAR, "Guest", "DECLINED"), (THERAPIST, "Ana Ruiz", "ACCEPTED")]
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 4, 8))
    steps = practice.status(capsys)
    assert [(s["client"], s["trigger"]) for s in steps] == [("Omar Haddad", "cancelled")] * 2


def test_therapists_own_address_is_never_followed_up(practice, capsys):
    session = Ev("t1", local(2026, 11, 12, 11), local(2026, 11, 12, 11, 50), "Supervision",
                 attendees=[(THERAPIST, "Ana Ruiz", "ACCEPTED")])
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Supervision no-show"
    session.status = "CANCELLED"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 13, 8))
    assert practice.status(capsys) == []
    assert practice.mails() == []


def test_restored_event_withdraws_the_cancellation(practice, capsys):
    session = Ev("o1", local(2026, 11, 12, 15), local(2026, 11, 12, 15, 50), "Omar Haddad")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team()])
    practice.once(local(2026, 11, 5, 9))
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 6, 9))
    practice.once(local(2026, 11, 13, 15, 5))
    assert [s["reason"] for s in practice.status(capsys)] == ["withdrawn", "withdrawn"]
    assert practice.mails() == []


def test_service_down_too_long_skips_as_too_late(practice, capsys):
    jane_no_show(practice)
    practice.once(local(2026, 11, 9, 12))       # phone step 5 days late: too late; email not due yet
    steps = practice.status(capsys)
    assert [(s["state"], s["reason"]) for s in steps] == [("skipped", "too_late"), ("planned", None)]
    practice.once(local(2026, 11, 10, 12))
    assert len(practice.mails_to(JANE)) == 1


def test_dry_run_changes_nothing(practice, capsys):
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.summary = "Jane Doe no-show"
    practice.calendar([team(), session])
    assert practice.once(local(2026, 11, 4, 11), "--dry-run") == 0
    assert practice.mails() == []
    assert practice.status(capsys) == []
    practice.once(local(2026, 11, 4, 11))
    assert len(practice.mails()) == 1


def test_organizer_listed_as_attendee_is_not_taken_for_the_client(practice, capsys):
    """The therapist's calendar account may differ from therapist_email; it organizes the session."""
    session = Ev("a1", local(2026, 11, 12, 11), local(2026, 11, 12, 11, 50), "Session",
                 attendees=[(OMAR, "Omar Haddad", "ACCEPTED"), ("ana.ruiz@gmail.example", "Ana", "ACCEPTED")])
    practice.calendar([team(), session])
    text = (practice.root / "practice.ics").read_text().replace(
        "UID:a1\n", "UID:a1\nORGANIZER;CN=Ana:mailto:ana.ruiz@gmail.example\n")
    assert "ORGANIZER;CN=Ana" in text                      # the edit found its target
    (practice.root / "practice.ics").write_text(text)
    practice.once(local(2026, 11, 2, 8))
    (practice.root / "practice.ics").write_text(text.replace("PARTSTAT=ACCEPTED:mailto:omar", "PARTSTAT=DECLINED:mailto:omar"))
    practice.once(local(2026, 11, 4, 8))
    assert [s["client"] for s in practice.status(capsys)] == ["Omar Haddad", "Omar Haddad"]


def test_a_missed_session_is_followed_up_once_even_if_later_deleted(practice, capsys):
    session = jane_no_show(practice)
    for day in (4, 10):
        practice.once(local(2026, 11, day, 10, 30))
    assert len(practice.mails()) == 2
    practice.calendar([team()])                          # the therapist tidies the calendar
    for day in (12, 16, 20):
        practice.once(local(2026, 11, day, 12))
    assert len(practice.mails()) == 2
    assert [s["trigger"] for s in practice.status(capsys)] == ["no_show", "no_show"]
    assert session.summary.endswith("no-show")


@pytest.mark.shows_client_data
def test_runaway_guard_caps_client_messages_per_hour(practice, capsys):
    cfg = practice.config.read_text().replace("[channels.email]", "[cadence]\nmax_messages_per_hour = 1\n\n[channels.email]")
    practice.config.write_text(cfg)
    events = [Ev(f"x{i}", local(2026, 11, 12, 10 + i), local(2026, 11, 12, 10 + i, 50), n)
              for i, n in enumerate(["Jane Doe", "Omar Haddad"])]
    practice.calendar([team(), *events])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team()])
    practice.once(local(2026, 11, 3, 8))
    practice.once(local(2026, 11, 19, 12))             # both emails due: only one may go this hour
    emails = [s["state"] for s in practice.status(capsys) if s["channel"] == "email"]
    assert sorted(emails) == ["planned", "sent"]
    capsys.readouterr()
    practice.cli("status")
    assert "throttled" in capsys.readouterr().out
    practice.once(local(2026, 11, 19, 13, 5))
    assert [s["state"] for s in practice.status(capsys) if s["channel"] == "email"] == ["sent", "sent"]


def test_reached_marker_in_the_calendar_stops_the_sequence(practice, capsys):
    session = jane_no_show(practice)
    practice.once(local(2026, 11, 4, 10, 5))
    session.summary = "Jane Doe no-show reached ✓"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 10, 10, 5))
    assert [(s["state"], s["reason"]) for s in practice.status(capsys)] == [("sent", None), ("skipped", "reached")]


def test_a_configured_colour_marks_a_no_show(practice, capsys):
    cfg = practice.config.read_text().replace("[channels.email]", '[detection]\nno_show_colors = ["11"]\n\n[channels.email]')
    practice.config.write_text(cfg)
    session = Ev("s1", local(2026, 11, 3, 10), local(2026, 11, 3, 10, 50), "Jane Doe")
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    text = (practice.root / "practice.ics").read_text().replace("SUMMARY:Jane Doe\n", "SUMMARY:Jane Doe\nCOLOR:11\n")
    (practice.root / "practice.ics").write_text(text)
    practice.once(local(2026, 11, 3, 11))
    assert [s["trigger"] for s in practice.status(capsys)] == ["no_show", "no_show"]


def test_attendee_address_that_differs_from_the_directory_is_not_followed_up(practice, capsys):
    """Wrong-recipient control: the title names Jane, the invitation went to another address."""
    session = Ev("a1", local(2026, 11, 12, 11), local(2026, 11, 12, 11, 50), "Jane Doe",
                 attendees=[("jane.personal@example.net", "Jane Doe", "ACCEPTED")])
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.status = "CANCELLED"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 4, 8))
    for day in (13, 19, 20):
        practice.once(local(2026, 11, day, 16))
    assert practice.status(capsys) == []
    assert practice.mails() == []
    capsys.readouterr()
    practice.cli("status")
    assert "different clients" in capsys.readouterr().out


def test_attendee_not_in_the_directory_is_the_client_when_nothing_else_names_one(practice, capsys):
    session = Ev("a1", local(2026, 11, 12, 11), local(2026, 11, 12, 11, 50), "Intake",
                 attendees=[("new.person@example.net", "Alex New", "ACCEPTED")])
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 2, 8))
    session.status = "CANCELLED"
    practice.calendar([team(), session])
    practice.once(local(2026, 11, 4, 8))
    steps = practice.status(capsys)
    assert [s["client"] for s in steps] == ["Alex New", "Alex New"]
    practice.once(local(2026, 11, 13, 11, 5))
    assert steps and practice.status(capsys)[0]["reason"] == "no_contact_details"   # no phone known
