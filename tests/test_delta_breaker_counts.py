"""A delta poll reads the window's counts (the vanish breaker's base) only when the breaker could
trip on it (``cycle.breaker_weighs``): with fewer tombstones than ``vanish_breaker_min`` (and
at least one), no count changes what ``detect.reconcile`` decides.  Checked over random stored
rows, deltas, counts and breaker settings; and through the engine, where a setting of one
event still weighs a single deletion against the whole window."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.calendars.base import Attendee, Occurrence, Window
from daemon import config as config_mod
from daemon.clients import Directory
from daemon.engine import detect
from daemon.engine.cycle import breaker_weighs
from daemon.model import Client, SessionRow
from tests.conftest import local, make_practice
from tests.ics import Ev

NOW = local(2026, 11, 16, 12)
WINDOW = Window(local(2026, 10, 1), local(2027, 1, 31))
JANE = Client(id="dir:jane", name="Jane Doe", email="jane.doe@example.com")
_RULES: list[Any] = []


def _rules() -> Any:
    if not _RULES:
        _RULES.append(config_mod.load(make_practice(Path("/tmp") / "wb-breaker-unused").config).detection)
    return _RULES[0]


@st.composite
def polls(draw: st.DrawFn) -> tuple[dict[str, SessionRow], list[Occurrence]]:
    """Stored rows of a few events (single or recurring), and a delta naming some of them."""
    prev: dict[str, SessionRow] = {}
    delta: list[Occurrence] = []
    for e in range(draw(st.integers(1, 5))):
        uid = f"ev{e}"
        for n in range(draw(st.integers(1, 4))):
            key = uid if n == 0 and draw(st.booleans()) else f"{uid}@{n}"
            start = NOW + timedelta(days=draw(st.integers(-60, 60)))
            prev[key] = SessionRow(calendar="main", key=key, uid=uid, start=start, end=start + timedelta(minutes=50),
                                   status=draw(st.sampled_from(["active", "active", "cancelled"])),
                                   client_id=JANE.id, client_name=JANE.name, client_email=JANE.email,
                                   present=draw(st.integers(0, 4)) > 0, first_seen_at=local(2026, 9, 1))
            how = draw(st.sampled_from(["same", "same", "tombstone", "deleted", "cancelled", "moved"]))
            if how == "tombstone":
                delta.append(Occurrence(key=key, uid=uid, tombstone=True))
            elif how == "deleted":
                delta.append(Occurrence(key=key, uid=uid, tombstone=True, deleted=True))
            elif how in ("cancelled", "moved"):
                at = start + (timedelta(days=1) if how == "moved" else timedelta(0))
                delta.append(Occurrence(key=key, uid=uid, start=at, end=at + timedelta(minutes=50),
                                        status="cancelled" if how == "cancelled" else "confirmed",
                                        summary="Jane Doe", attendees=(Attendee(JANE.email, JANE.name, "ACCEPTED"),)))
    return prev, delta


@settings(max_examples=400, deadline=None)
@given(polls(), st.integers(0, 4), st.sampled_from([0.0, 0.1, 0.3, 0.9]), st.integers(0, 40), st.integers(0, 40))
def test_without_enough_tombstones_no_count_changes_the_outcome(poll: Any, least: int, share: float,
                                                                shown: int, upcoming: int) -> None:
    prev, delta = poll
    rules = replace(_rules(), vanish_breaker_min=least, vanish_breaker=share)
    ctx = detect.Context(calendar="main", now=NOW, window=WINDOW, baseline=False, first_seen_at=local(2026, 9, 1),
                         prev_poll_at=NOW - timedelta(hours=1), rules=rules, directory=Directory([JANE]),
                         therapist_email="ana@riverside.example")
    if breaker_weighs(delta, least):
        return
    skipped = detect.reconcile(prev, delta, False, ctx)
    counted = detect.reconcile(prev, delta, False, replace(ctx, window_counts=(shown, min(upcoming, shown))))
    assert skipped == counted and not skipped.tripped


def test_enough_tombstones_need_the_counts() -> None:
    gone = [Occurrence(key=f"k{i}", uid=f"k{i}", tombstone=True) for i in range(3)]
    assert breaker_weighs(gone, 3) and not breaker_weighs(gone[:2], 3)
    assert breaker_weighs(gone[:1], 0) and breaker_weighs(gone[:1], 1) and not breaker_weighs([], 0)
    moved = [Occurrence(key="k0", uid="k0", start=NOW, end=NOW, status="cancelled")] * 5
    assert not breaker_weighs(moved, 1)       # a cancelled occurrence is no tombstone


def _degraded(p: Any) -> Any:
    from daemon.store.tables import calendars
    from tests.conftest import store_rows

    return store_rows(p, calendars.select())[0].degraded


def test_a_single_deletion_is_weighed_against_the_whole_window(tmp_path: Path, capsys: Any) -> None:
    """``vanish_breaker_min = 1``: one event gone of twelve upcoming is no 30 % vanish, so the delta
    applies; weighed against its own loaded row alone it would have tripped."""
    p = make_practice(tmp_path / "p", extra="\n[detection]\nvanish_breaker_min = 1\n")
    people = ["Jane Doe", "Omar Haddad", "Chris Park", "Mia Stone"]
    events = [Ev(f"s-{i}", local(2026, 11, 9 + i, 9), local(2026, 11, 9 + i, 10), people[i % 4]) for i in range(12)]
    p.calendar(events)
    assert p.once(local(2026, 11, 2, 8)) == 0
    p.calendar(events[1:])
    capsys.readouterr()
    assert p.once(local(2026, 11, 2, 9)) == 0
    assert "(changes)" in capsys.readouterr().err
    assert _degraded(p) is None
    p.calendar(events[5:])          # four more of eleven: over the share, held
    assert p.once(local(2026, 11, 2, 10)) == 1
    assert "4 events vanished at once" in _degraded(p)
