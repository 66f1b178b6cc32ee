"""Each clinical rule is one function with a domain name (daemon.rules, daemon.cadence,
daemon.clients); these are its unit tests, over plain values."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from daemon import config as config_mod
from daemon.client_files import do_not_contact
from daemon.clients import Client, Directory, Rejected
from daemon.engine.cadence import due_times, gap_before, gaps
from daemon.model import SessionRow
from daemon.rules import (
    Missed,
    booking_stops_step,
    coming_back,
    corrected_start,
    is_a_miss,
    is_new_booking,
    moved,
    same_episode,
    trigger_withdrawn,
    vanish_is_cancellation,
)
from tests.conftest import local, make_practice

WINDOW = timedelta(days=14)


def row(key: str, start, **kw) -> SessionRow:
    return SessionRow(calendar=kw.pop("calendar", "main"), key=key, uid=kw.pop("uid", key), start=start,
                      end=start + timedelta(minutes=50), client_id="dir:jane", **kw)


def missed(kind: str = "no_show", start=None, detected=None, key: str = "m") -> Missed:
    start = start or local(2026, 11, 3, 10)
    return Missed(calendar="main", key=key, start=start, kind=kind, detected_at=detected or start + timedelta(hours=1))


# -- rule 2 -------------------------------------------------------------------------------------
def test_vanish_is_a_cancellation_only_before_the_start():
    s = row("a", local(2026, 11, 3, 10))
    assert vanish_is_cancellation(s, local(2026, 11, 3, 9, 58))
    assert not vanish_is_cancellation(s, local(2026, 11, 3, 10))
    assert not vanish_is_cancellation(s, local(2026, 11, 9))
    assert not vanish_is_cancellation(replace(s, status="cancelled"), local(2026, 11, 1))
    assert vanish_is_cancellation(s, None)


# -- rule 3 -------------------------------------------------------------------------------------
def test_coming_back_within_the_rebook_window_or_by_a_new_booking():
    m = missed()
    near = row("near", local(2026, 11, 10, 10), booked_at=None)
    far_old = row("far", local(2026, 12, 15, 10), booked_at=local(2026, 10, 1))
    far_new = row("new", local(2026, 12, 15, 10), booked_at=local(2026, 11, 5))
    assert coming_back(m, [near], WINDOW) == near
    assert coming_back(m, [far_old], WINDOW) is None          # a series already on the calendar
    assert coming_back(m, [far_new], WINDOW) == far_new
    assert coming_back(m, [replace(far_new, booked_at=None)], WINDOW) is None   # there at the first read


@pytest.mark.parametrize("change", [dict(status="cancelled"), dict(present=False), dict(no_show=True),
                                    dict(key="m"), dict(start=local(2026, 11, 2, 10))])
def test_what_does_not_count_as_coming_back(change):
    candidate = replace(row("near", local(2026, 11, 10, 10)), **change)
    assert coming_back(missed(), [candidate], WINDOW) is None


def test_a_session_moved_earlier_than_a_cancelled_one_counts_from_when_it_was_noticed():
    m = missed("cancelled", start=local(2026, 11, 12, 15), detected=local(2026, 11, 5, 9))
    assert coming_back(m, [row("earlier", local(2026, 11, 9, 15))], WINDOW) is not None
    assert coming_back(m, [row("before", local(2026, 11, 4, 15))], WINDOW) is None
    assert coming_back(m, [row("weeks-before", local(2026, 11, 6, 15))], timedelta(days=3)) is None


def test_new_booking_and_the_first_step_of_a_no_show():
    since = local(2026, 11, 3, 10)
    assert is_new_booking(row("a", since, booked_at=since), since)
    assert not is_new_booking(row("a", since, booked_at=since - timedelta(seconds=1)), since)
    assert not is_new_booking(row("a", since), since)
    assert not booking_stops_step("no_show", 1)
    assert booking_stops_step("no_show", 2) and booking_stops_step("cancelled", 1)


# -- rules 4 and 5 ------------------------------------------------------------------------------
def test_trigger_withdrawn_by_marker_restore_or_move():
    now = local(2026, 11, 4, 9)
    marked = row("m", local(2026, 11, 3, 10), no_show=True)
    assert not trigger_withdrawn(missed(), marked, now)
    assert trigger_withdrawn(missed(), replace(marked, no_show=False), now)
    assert trigger_withdrawn(missed(), replace(marked, status="cancelled"), now)
    assert not trigger_withdrawn(missed(), replace(marked, present=False), now)     # pruned after it took place
    assert trigger_withdrawn(missed(), None, now)
    gone = row("m", local(2026, 11, 3, 10), status="cancelled", present=False)
    assert not trigger_withdrawn(missed("cancelled"), gone, now)
    assert trigger_withdrawn(missed("cancelled"), replace(gone, status="active", present=True), now)


def test_a_session_that_names_another_client_withdraws_the_follow_up():
    now = local(2026, 11, 4, 9)
    marked = row("m", local(2026, 11, 3, 10), no_show=True)
    mine = replace(missed(), client_id="dir:jane")
    assert not trigger_withdrawn(mine, marked, now)
    assert trigger_withdrawn(mine, replace(marked, client_id="dir:omar"), now)
    assert not trigger_withdrawn(mine, replace(marked, client_id=None), now)      # unclear: held, not withdrawn
    assert not trigger_withdrawn(mine, replace(marked, client_id="dir:omar", present=False), now)


def test_moved_sessions_and_corrected_dates():
    now = local(2026, 11, 4, 9)
    marked = row("m", local(2026, 11, 3, 10), no_show=True)
    later, earlier = replace(marked, start=local(2026, 11, 6, 10)), replace(marked, start=local(2026, 11, 2, 10))
    assert moved(missed(), later, now) and not moved(missed(), marked, now)
    assert not moved(missed(), earlier, now)
    assert moved(missed("cancelled"), replace(earlier, status="cancelled"), now)
    assert corrected_start(missed(), earlier, now) == local(2026, 11, 2, 10)
    assert corrected_start(missed(), later, now) is None and corrected_start(missed(), marked, now) is None


def test_same_episode_and_what_counts_as_a_miss():
    assert same_episode(local(2026, 11, 2), local(2026, 11, 16), WINDOW)
    assert not same_episode(local(2026, 11, 2), local(2026, 11, 17), WINDOW)
    assert is_a_miss(None, True) and is_a_miss("rebooked", True) and is_a_miss("merged", False)
    assert not is_a_miss("rebooked", False) and not is_a_miss("withdrawn", True) and not is_a_miss("ambiguous", False)


# -- rule 6 -------------------------------------------------------------------------------------
@pytest.fixture
def config(tmp_path):
    return config_mod.load(make_practice(tmp_path / "p").config)


def test_due_times_keep_the_gap_when_noticed_late(config):
    tuesday = local(2026, 11, 3, 10)
    assert gaps(config, tuesday) == [timedelta(0), timedelta(days=6)]
    assert gap_before(config, tuesday, 2) == timedelta(days=6) and gap_before(config, tuesday, 9) == timedelta(0)
    assert due_times(config, tuesday, tuesday) == [local(2026, 11, 4, 10), local(2026, 11, 10, 10)]
    assert due_times(config, tuesday, local(2026, 11, 13, 15)) == [local(2026, 11, 13, 15), local(2026, 11, 19, 15)]
    assert due_times(config, tuesday, local(2026, 11, 13, 18)) == [local(2026, 11, 16, 9), local(2026, 11, 23, 9)]


# -- rule 1 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", ["yes", "TRUE", "1", "x", "X", "✓", "Yes - asked in March", "true (2025)"])
def test_do_not_contact_spellings_that_mean_yes(raw):
    assert do_not_contact(raw)


@pytest.mark.parametrize("raw", ["", "no", "FALSE", "0", "n"])
def test_do_not_contact_spellings_that_mean_no(raw):
    assert not do_not_contact(raw)


@pytest.mark.parametrize("raw", ["maybe", "ask first", "no?", "2"])
def test_an_unreadable_do_not_contact_is_refused(raw):
    with pytest.raises(ValueError, match="do-not-contact"):
        do_not_contact(raw)


def test_a_rejected_entry_protects_by_email_name_alias_and_phone():
    entry = Rejected("clients.csv:4", "bad", names=("Rosa Lind", "Ro"), emails=("rosa.lind@example.net",),
                     phones=("+15550100203",))
    d = Directory(clients=[], rejected=[entry])
    assert d.rejected_naming(emails=["Rosa.Lind@example.net"], texts=[]) is entry
    assert d.rejected_naming(emails=[], texts=["Intake: ro (online)"]) is entry
    assert d.rejected_naming(emails=[], texts=["Rosalind"]) is None
    assert d.rejected_protecting(Client("x", "Someone", phone="+15550100203")) is entry
    assert d.rejected_protecting(Client("x", "Rosa  Lind")) is entry
    assert d.rejected_protecting(Client("x", "Mia Stone", email="mia@example.net")) is None
    digits = Rejected("c:1", "bad", phones=("5550100206",))
    assert digits.names_phone("+15550100206") and not digits.names_phone("+15550100207")
    assert "clients.csv:4" in entry.attention()
