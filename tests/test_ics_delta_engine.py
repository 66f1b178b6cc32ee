"""Incremental iCal polls through the real engine and store (SQLite and PostgreSQL): what each
event gave is kept in ``source_groups`` across restarts, a changed event is applied as a delta,
and the sessions and follow-ups are those of a twin practice that parses the whole feed every
time (its kept state wiped before each poll)."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Practice, local, make_practice
from tests.ics import Ev

JANE = ("jane.doe@example.com", "Jane Doe", "ACCEPTED")
T0 = local(2026, 11, 2, 8)
WEEKLY = local(2026, 11, 3, 10)      # Jane's series, Tuesdays


def _events(step: int) -> list[Ev]:
    out = [Ev("jane-series", WEEKLY, WEEKLY + timedelta(minutes=50), "Jane Doe", rrule="FREQ=WEEKLY;COUNT=10",
              attendees=[JANE])]
    if step >= 1:      # Jane cancels tomorrow's session (an override)
        out.append(Ev("jane-series", WEEKLY, WEEKLY + timedelta(minutes=50), "Jane Doe", status="CANCELLED",
                      recurrence_id=WEEKLY, attendees=[JANE]))
    omar_at = local(2026, 11, 5, 14) + (timedelta(hours=2) if step >= 2 else timedelta(0))
    if step < 3:       # Omar's appointment moves, then goes
        out.append(Ev("omar-1", omar_at, omar_at + timedelta(minutes=50), "Omar Haddad"))
    for i in range(8):  # the rest of the practice, unchanged
        at = local(2026, 11, 9 + i, 9)
        out.append(Ev(f"chris-{i}", at, at + timedelta(minutes=50), "Chris Park" if i % 2 else "Mia Stone"))
    return out


def _url(p: Practice) -> str:
    text = (p.root / "config.toml").read_text()
    if 'url = "' in text:
        return text.split('url = "', 1)[1].split('"', 1)[0]
    return f"sqlite:///{p.root / 'state.db'}"


def _sessions(p: Practice) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(_url(p))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                'SELECT key, uid, start, "end", status, client_id, ambiguous, no_show, present, first_seen_at, '
                "cancelled_at, booked_at FROM sessions ORDER BY key")).all()
        return [tuple(r) for r in rows]
    finally:
        engine.dispose()


def _kept(p: Practice) -> tuple[dict[str, Any], int]:
    engine = sa.create_engine(_url(p))
    try:
        with engine.connect() as conn:
            state = json.loads(conn.execute(sa.text("SELECT state_json FROM calendars")).scalar_one())
            count = conn.execute(sa.text("SELECT COUNT(*) FROM source_groups")).scalar_one()
        return state, count
    finally:
        engine.dispose()


def _forget(p: Practice) -> None:
    """The twin's kept state wiped: its next poll parses the whole feed."""
    engine = sa.create_engine(_url(p))
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE calendars SET state_json = '{}'"))
            conn.execute(sa.text("DELETE FROM source_groups"))
    finally:
        engine.dispose()


def test_changes_are_applied_as_deltas_and_match_a_full_parse(practice: Practice, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture, capsys: Any) -> None:
    twin = make_practice(tmp_path / "twin")
    caplog.set_level(logging.DEBUG, logger="daemon.engine.cycle")
    for step in range(4):
        now = T0 + timedelta(hours=step)         # the same day: deltas are possible
        for p in (practice, twin):
            p.calendar(_events(step))
        if step:
            _forget(twin)
        capsys.readouterr()
        assert practice.once(now) == 0
        kinds = [line for line in capsys.readouterr().err.splitlines() if "in the window" in line]
        assert kinds and kinds[-1].endswith("(changes)" if step else "(snapshot)"), kinds
        assert twin.once(now) == 0
        a, b = _sessions(practice), _sessions(twin)
        assert a == b, (set(a) ^ set(b))
        state, count = _kept(practice)
        assert state["groups"] and count == (10 if step < 3 else 9)
    ours = practice.status(capsys)
    theirs = twin.status(capsys)
    assert [(s["client"], s["trigger"], s["state"]) for s in ours] == \
        [(s["client"], s["trigger"], s["state"]) for s in theirs]
    assert [s["trigger"] for s in ours if s["client"] == "Omar Haddad"][:1] == ["cancelled"]
    rows = {r[0]: r for r in _sessions(practice)}
    assert rows["jane-series@20261103T150000Z"][4] == "cancelled"     # Jane comes back next week


def _degraded(p: Practice) -> str | None:
    engine = sa.create_engine(_url(p))
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT degraded FROM calendars")).scalar_one()
    finally:
        engine.dispose()


def test_the_breaker_weighs_a_delta_against_the_whole_window(practice: Practice, tmp_path: Path,
                                                             capsys: Any) -> None:
    """A delta loads only its rows; the breaker still counts every session in the window."""
    twin = make_practice(tmp_path / "twin")
    people = ["Jane Doe", "Omar Haddad", "Chris Park", "Mia Stone"]
    events = [Ev(f"s-{i}", local(2026, 11, 9 + i, 9), local(2026, 11, 9 + i, 10), people[i % 4]) for i in range(12)]
    for p in (practice, twin):
        p.calendar(events)
        assert p.once(T0) == 0
    for p in (practice, twin):     # 4 of 12 upcoming sessions vanish: over the 30 % breaker
        p.calendar(events[4:])
    _forget(twin)
    capsys.readouterr()
    assert practice.once(T0 + timedelta(hours=1)) == 1        # held: reported as degraded
    assert "(changes)" in capsys.readouterr().err
    assert twin.once(T0 + timedelta(hours=1)) == 1
    held = _degraded(practice)
    assert held and "4 events vanished at once, 33 % of the upcoming sessions" in held
    assert held == _degraded(twin)
    assert _sessions(practice) == _sessions(twin)
    for p in (practice, twin):     # only 2 of 12: applied, each a cancellation
        p.calendar(events[2:])
    _forget(twin)
    assert practice.once(T0 + timedelta(hours=2)) == 0
    assert twin.once(T0 + timedelta(hours=2)) == 0
    assert _degraded(practice) is None and _degraded(twin) is None
    assert _sessions(practice) == _sessions(twin)
    assert [r[4] for r in _sessions(practice)][:2] == ["cancelled", "cancelled"]
