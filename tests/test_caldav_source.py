"""The CalDAV source against a real Radicale on loopback: reads, deltas, unchanged, faults."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.caldav import CaldavOptions, CaldavSource
from daemon.clock import FixedClock
from daemon.errors import SecretMissing, SourceError
from tests.conftest import NY, local
from tests.fakes.radicale_server import RadicaleServer
from tests.ics import Ev, calendar

NOW = local(2026, 11, 2, 8)
WINDOW = Window(NOW - timedelta(days=30), NOW + timedelta(days=90))
SECRET_WORD = "Confidential-Grief"


def session(uid: str, day: int, title: str = "Jane Doe", **kw: Any) -> str:
    return calendar([Ev(uid, local(2026, 11, day, 10), local(2026, 11, day, 10, 50), title, **kw)])


def source(url: str, tmp_path: Path, *, username: str = "", secrets: dict[str, str] | None = None) -> CaldavSource:
    def secret(name: str) -> str:
        if secrets and name in secrets:
            return secrets[name]
        raise SecretMissing(name, ["test"])

    ctx = SourceContext(base_dir=tmp_path, timezone=NY, clock=FixedClock(NOW), secret=secret, state_dir=tmp_path)
    return CaldavSource("main", url, CaldavOptions(username=username), ctx, timeout=5)


@pytest.fixture
def dav(tmp_path: Path) -> Iterator[RadicaleServer]:
    with RadicaleServer(tmp_path / "dav") as server:
        yield server


def test_full_read_then_unchanged_then_delta(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "practice")
    dav.put(cal, "s1", session("s1", 10))
    dav.put(cal, "w1", calendar([Ev("w1", local(2026, 11, 3, 15), local(2026, 11, 3, 15, 50), "Omar Haddad",
                                    rrule="FREQ=WEEKLY;COUNT=4")]))
    src = source(cal, tmp_path)
    first = src.fetch(WINDOW, {})
    assert first.complete and sorted(o.key for o in first.occurrences or []) == [
        "s1", "w1@20261103T200000Z", "w1@20261110T200000Z", "w1@20261117T200000Z", "w1@20261124T200000Z"]
    again = src.fetch(WINDOW, first.state)
    assert again.occurrences is None and again.state["objects"] == first.state["objects"]
    # Shorten the series, delete the single event: a delta with tombstones, no event text in state.
    dav.put(cal, "w1", calendar([Ev("w1", local(2026, 11, 3, 15), local(2026, 11, 3, 15, 50), "Omar Haddad",
                                    rrule="FREQ=WEEKLY;COUNT=2")]))
    dav.delete(cal, "s1")
    delta = src.fetch(WINDOW, again.state)
    assert not delta.complete
    tombs = {(o.key, o.deleted) for o in delta.occurrences or [] if o.tombstone}
    assert tombs == {("s1", True), ("w1@20261117T200000Z", False), ("w1@20261124T200000Z", False)}
    assert {o.key for o in delta.occurrences or [] if not o.tombstone} == {
        "w1@20261103T200000Z", "w1@20261110T200000Z"}
    assert "Omar" not in str(delta.state) and "Jane" not in str(delta.state)
    # The next day the window moved: a complete snapshot again.
    later = Window(WINDOW.start + timedelta(days=1), WINDOW.end + timedelta(days=1))
    full = src.fetch(later, delta.state)
    assert full.complete and len(full.occurrences or []) == 2
    src.close()


def test_broken_object_is_a_warning_and_keeps_its_sessions(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "practice")
    dav.put(cal, "s1", session("s1", 10))
    dav.put(cal, "s2", session("s2", 11, "Omar Haddad"))
    src = source(cal, tmp_path)
    first = src.fetch(WINDOW, {})
    # The server hands out s2 with a date no parser accepts (Radicale itself would refuse it on PUT).
    dav.put(cal, "s2", session("s2", 11, f"Omar Haddad {SECRET_WORD}"))
    dav.rewrites.append((b"DTSTART;TZID=America/New_York:20261111T100000", b"DTSTART;VALUE=DATE:2026-13-45"))
    dav.put(cal, "s1", session("s1", 12))
    for state in (first.state, {**first.state, "window_day": "2026-01-01"}):   # delta, then full read
        result = src.fetch(WINDOW, state)
        assert not result.complete
        assert [w for w in result.warnings if "s2.ics" in w and "skipped" in w]
        assert SECRET_WORD not in " ".join(result.warnings)
        assert not [o for o in result.occurrences or [] if o.tombstone]
        assert {o.key for o in result.occurrences or []} == {"s1"}
        assert result.state["objects"]["/ana/practice/s2.ics"] == first.state["objects"]["/ana/practice/s2.ics"]


def test_missing_calendar_is_a_source_error(dav: RadicaleServer, tmp_path: Path) -> None:
    dav.make_calendar("ana", "practice")
    with pytest.raises(SourceError) as info:
        source(dav.url + "/ana/nope/", tmp_path).fetch(WINDOW, {})
    assert "not found" in info.value.reason or "404" in info.value.reason


def test_connection_refused_is_a_source_error(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceError) as info:
        source(f"http://127.0.0.1:{port}/ana/practice/", tmp_path).fetch(WINDOW, {})
    assert "connect" in info.value.reason


def test_wrong_password_is_a_source_error_right_one_reads(tmp_path: Path) -> None:
    with RadicaleServer(tmp_path / "dav", users={"ana": "s3cret"}) as dav:
        cal = dav.make_calendar("ana", "practice")
        dav.put(cal, "s1", session("s1", 10, f"Jane {SECRET_WORD}"))
        with pytest.raises(SourceError) as info:
            source(cal, tmp_path, username="ana", secrets={"caldav_password": "wrong"}).fetch(WINDOW, {})
        assert "401" in info.value.reason and "caldav_password" in info.value.reason
        assert SECRET_WORD not in str(info.value)
        with pytest.raises(SourceError) as missing:
            source(cal, tmp_path, username="ana").fetch(WINDOW, {})
        assert "caldav_password" in missing.value.reason
        good = source(cal, tmp_path, username="ana", secrets={"caldav_password": "s3cret"})
        assert [o.key for o in good.fetch(WINDOW, {}).occurrences or []] == ["s1"]
        assert source(cal, tmp_path, username="ana").check()


def test_time_zones_all_day_and_floating(dav: RadicaleServer, tmp_path: Path) -> None:
    cal = dav.make_calendar("ana", "practice")
    berlin = Ev("b1", datetime(2026, 11, 10, 18), datetime(2026, 11, 10, 18, 50), "Jane Doe", tzid="Europe/Berlin")
    dav.put(cal, "b1", calendar([berlin]))
    dav.put(cal, "d1", calendar([Ev("d1", datetime(2026, 11, 11), datetime(2026, 11, 12), "Jane Doe", all_day=True)]))
    floating = calendar([Ev("f1", local(2026, 11, 12, 9), local(2026, 11, 12, 9, 50), "Jane Doe")])
    dav.put(cal, "f1", floating.replace(";TZID=America/New_York:", ":"))
    occ = {o.key: o for o in source(cal, tmp_path).fetch(WINDOW, {}).occurrences or []}
    assert occ["b1"].start.isoformat() == "2026-11-10T18:00:00+01:00"
    assert occ["d1"].all_day
    assert occ["f1"].start == datetime(2026, 11, 12, 9, tzinfo=NY)
