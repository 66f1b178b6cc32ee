"""Setting aside plain series that cannot reach the window (and overrides outside it) before
icalendar reads a feed: what must go, what must stay, and that either way the occurrences,
warnings and unreadable events equal a full parse of the same text."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.ics import IcsSource
from connectors.calendars.ics_split import without_distant_events
from daemon.clock import FixedClock
from tests.conftest import local

WINDOW = Window(datetime(2026, 10, 3, tzinfo=timezone.utc), datetime(2027, 1, 31, tzinfo=timezone.utc))
ZONE = "America/New_York"


def _source() -> IcsSource:
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo(ZONE),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    return IcsSource("main", "x.ics", None, ctx)


def vevent(uid: str, start: str, *extra: str, end: str | None = None, params: str = f";TZID={ZONE}") -> str:
    lines = [f"UID:{uid}", "SUMMARY:Jane Doe", f"DTSTART{params}:{start}"]
    if end is not None:
        lines.append(f"DTEND{params}:{end}")
    return "BEGIN:VEVENT\r\n" + "\r\n".join([*lines, *extra]) + "\r\nEND:VEVENT\r\n"


def calendar(*blocks: str) -> str:
    return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//split//EN\r\n" + "".join(blocks) + "END:VCALENDAR\r\n"


def same_as_full(text: str) -> tuple[int, int]:
    """(occurrences, VEVENT blocks left); asserts the cut text yields what the whole text yields."""
    source = _source()
    fast = source.parse_full(text.encode(), WINDOW)
    slow = source.parse_full(text.encode(), WINDOW, skip_distant=False)
    assert (sorted(fast[0], key=repr), fast[1], fast[2]) == (sorted(slow[0], key=repr), slow[1], slow[2])
    return len(fast[0]), without_distant_events(text, WINDOW).count("BEGIN:VEVENT")


# -- must be cut ---------------------------------------------------------------------------------
ENDED = [
    ("count weekly", ["RRULE:FREQ=WEEKLY;COUNT=10"], "20260105T100000"),
    ("count weekly byday", ["RRULE:FREQ=WEEKLY;COUNT=20;BYDAY=MO,TH;WKST=MO"], "20260105T100000"),
    ("count daily interval", ["RRULE:FREQ=DAILY;INTERVAL=3;COUNT=30"], "20260105T100000"),
    ("until utc", ["RRULE:FREQ=WEEKLY;UNTIL=20260801T000000Z"], "20260105T100000"),
    ("until date, monthly by-rules", ["RRULE:FREQ=MONTHLY;BYMONTHDAY=31;UNTIL=20260801"], "20260131T100000"),
    ("with exdate", ["RRULE:FREQ=WEEKLY;COUNT=10", f"EXDATE;TZID={ZONE}:20260112T100000"], "20260105T100000"),
]


@pytest.mark.parametrize("label,extra,start", ENDED, ids=[e[0] for e in ENDED])
def test_a_series_ended_before_the_window_is_cut_with_its_overrides(label: str, extra: list[str],
                                                                   start: str) -> None:
    override = vevent("s1", "20260113T110000", f"RECURRENCE-ID;TZID={ZONE}:20260112T100000",
                      end="20260113T115000")
    text = calendar(vevent("s1", start, *extra, end=start[:9] + "105000"), override,
                    vevent("near", "20261110T150000", end="20261110T155000"))
    assert same_as_full(text) == (1, 1)


def test_a_series_starting_after_the_window_is_cut() -> None:
    text = calendar(vevent("later", "20270601T100000", "RRULE:FREQ=WEEKLY", end="20270601T105000"),
                    vevent("later", "20270609T100000", f"RECURRENCE-ID;TZID={ZONE}:20270608T100000",
                           end="20270609T105000"))
    assert same_as_full(text) == (0, 0)


def test_an_override_outside_the_window_of_a_running_series_is_cut() -> None:
    master = vevent("run", "20260105T100000", "RRULE:FREQ=WEEKLY", end="20260105T105000")
    old = vevent("run", "20260113T100000", f"RECURRENCE-ID;TZID={ZONE}:20260112T100000", end="20260113T105000")
    cancelled = vevent("run", "20261109T100000", f"RECURRENCE-ID;TZID={ZONE}:20261109T100000",
                       "STATUS:CANCELLED", end="20261109T105000")
    n, left = same_as_full(calendar(master, old, cancelled))
    assert left == 2 and n > 10


# -- must be kept --------------------------------------------------------------------------------
def test_an_override_moved_into_the_window_from_an_ended_series_is_kept() -> None:
    master = vevent("m", "20260105T100000", "RRULE:FREQ=WEEKLY;COUNT=5", end="20260105T105000")
    moved = vevent("m", "20261110T100000", f"RECURRENCE-ID;TZID={ZONE}:20260112T100000", end="20261110T105000")
    assert same_as_full(calendar(master, moved)) == (1, 2)


def test_an_override_moved_out_of_the_window_is_kept() -> None:
    """Dropping it would bring back the occurrence it replaced, which lies in the window."""
    master = vevent("m", "20261005T100000", "RRULE:FREQ=WEEKLY;COUNT=5", end="20261005T105000")
    moved = vevent("m", "20260110T100000", f"RECURRENCE-ID;TZID={ZONE}:20261012T100000", end="20260110T105000")
    assert same_as_full(calendar(master, moved)) == (4, 2)


# (the override, outside the window, may go; the master must stay, and with ``whole`` both)
KEPT = [
    ("count with bymonthday", ["RRULE:FREQ=MONTHLY;COUNT=4;BYMONTHDAY=31"], "20260131T100000"),
    ("count monthly", ["RRULE:FREQ=MONTHLY;COUNT=3"], "20260131T100000"),
    ("count yearly leap day", ["RRULE:FREQ=YEARLY;COUNT=2"], "20240229T100000"),
    ("count daily byday", ["RRULE:FREQ=DAILY;COUNT=3;BYDAY=SA"], "20260105T100000"),
    ("count weekly bysetpos", ["RRULE:FREQ=WEEKLY;COUNT=3;BYDAY=MO;BYSETPOS=1"], "20260105T100000"),
    ("rdate", ["RRULE:FREQ=WEEKLY;COUNT=3", f"RDATE;TZID={ZONE}:20261110T100000"], "20260105T100000"),
    ("exrule", ["RRULE:FREQ=WEEKLY;COUNT=3", "EXRULE:FREQ=MONTHLY"], "20260105T100000"),
    ("no end", ["RRULE:FREQ=WEEKLY"], "20200105T100000"),
    ("until inside", ["RRULE:FREQ=WEEKLY;UNTIL=20261201T000000Z"], "20260105T100000"),
    ("count reaching", ["RRULE:FREQ=WEEKLY;COUNT=60"], "20260105T100000"),
    ("two rules", ["RRULE:FREQ=WEEKLY;COUNT=3", "RRULE:FREQ=DAILY;COUNT=400"], "20260105T100000"),
    ("range", ["RRULE:FREQ=WEEKLY;COUNT=3"], "20260105T100000"),
    ("runaway", ["RRULE:FREQ=MINUTELY;COUNT=3"], "20260105T100000"),
    ("count and until", ["RRULE:FREQ=WEEKLY;COUNT=3;UNTIL=20260201T000000Z"], "20260105T100000"),
    ("bad until", ["RRULE:FREQ=WEEKLY;UNTIL=2026"], "20260105T100000"),
    ("broken exdate", ["RRULE:FREQ=WEEKLY;COUNT=3", "EXDATE:2026011"], "20260105T100000"),
]


@pytest.mark.parametrize("label,extra,start", KEPT, ids=[e[0] for e in KEPT])
def test_a_series_this_scanner_cannot_bound_is_kept(label: str, extra: list[str], start: str) -> None:
    rid = f"RECURRENCE-ID;RANGE=THISANDFUTURE;TZID={ZONE}" if label == "range" else f"RECURRENCE-ID;TZID={ZONE}"
    override = vevent("k", "20260113T110000", f"{rid}:20260112T100000", end="20260113T115000")
    master = vevent("k", start, *extra, end=start[:9] + "105000")
    n, left = same_as_full(calendar(master, override))
    assert master in without_distant_events(calendar(master, override), WINDOW)
    whole = {"rdate", "exrule", "range", "runaway", "two rules", "count and until", "broken exdate"}
    assert left == (2 if label in whole else 1)


def test_until_as_a_date_and_floating_and_all_day_series() -> None:
    floating = vevent("f", "20260105T100000", "RRULE:FREQ=WEEKLY;COUNT=4", end="20260105T105000", params="")
    all_day = vevent("d", "20260105", "RRULE:FREQ=WEEKLY;UNTIL=20260301", params=";VALUE=DATE")
    reaching = vevent("r", "20260105", "RRULE:FREQ=WEEKLY;UNTIL=20261010", params=";VALUE=DATE")
    edge = vevent("e", "20260905T230000", "RRULE:FREQ=WEEKLY;COUNT=4", end="20260905T235000", params="")
    n, left = same_as_full(calendar(floating, all_day, reaching, edge))
    assert left == 2 and n >= 1


# -- random series near the window's edges ------------------------------------------------------
@st.composite
def series(draw: st.DrawFn) -> list[str]:
    uid = f"s{draw(st.integers(0, 6))}"
    edge = draw(st.sampled_from([WINDOW.start, WINDOW.end]))
    start = edge + timedelta(hours=draw(st.integers(-24 * 120, 24 * 60)))
    form = draw(st.sampled_from(["utc", "floating", "tzid", "date"]))
    fmt = {"utc": "%Y%m%dT%H%M%SZ", "date": "%Y%m%d"}.get(form, "%Y%m%dT%H%M%S")
    params = {"tzid": ";TZID=Europe/Berlin", "date": ";VALUE=DATE"}.get(form, "")
    step = timedelta(days=1) if form == "date" else timedelta(minutes=50)
    rule = draw(st.sampled_from([
        "FREQ=WEEKLY;COUNT={n}", "FREQ=DAILY;COUNT={n}", "FREQ=WEEKLY;COUNT={n};BYDAY=MO,FR",
        "FREQ=WEEKLY;INTERVAL=2;COUNT={n}", "FREQ=MONTHLY;COUNT={n};BYMONTHDAY=31",
        "FREQ=WEEKLY;UNTIL={until}", "FREQ=DAILY;INTERVAL=5;UNTIL={until}"]))
    n = draw(st.integers(1, 12))
    until = (start + timedelta(days=draw(st.integers(0, 90)))).strftime(draw(st.sampled_from([fmt, "%Y%m%d"])))
    extra = [f"RRULE:{rule.format(n=n, until=until)}"]
    if draw(st.booleans()):
        extra.append(f"EXDATE{params}:{(start + timedelta(weeks=1)).strftime(fmt)}")
    if draw(st.integers(0, 6)) == 0:
        extra.append(f"RDATE{params}:{(start + timedelta(days=draw(st.integers(0, 200)))).strftime(fmt)}")
    blocks = [vevent(uid, start.strftime(fmt), *extra, end=(start + step).strftime(fmt), params=params)]
    for _ in range(draw(st.integers(0, 3))):
        original = start + timedelta(weeks=draw(st.integers(0, 12)))
        moved = original + timedelta(days=draw(st.sampled_from([0, 1, -3, 40, 150, -150])))
        blocks.append(vevent(uid, moved.strftime(fmt), f"RECURRENCE-ID{params}:{original.strftime(fmt)}",
                             *draw(st.sampled_from([[], ["STATUS:CANCELLED"], ["SEQUENCE:2"]])),
                             end=(moved + step).strftime(fmt), params=params))
    return blocks


@settings(max_examples=150, deadline=None)
@given(st.lists(series(), max_size=6))
def test_cutting_series_yields_the_same_as_a_full_parse(feeds: list[list[str]]) -> None:
    same_as_full(calendar(*(b for blocks in feeds for b in blocks)))
