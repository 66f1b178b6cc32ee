"""Setting distant one-off events aside before icalendar reads a feed changes nothing it yields:
random feeds (dates, UTC, floating and TZID times, DURATION, shared UIDs, series, damaged lines,
folded lines) give the same occurrences, warnings and unreadable events either way."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.ics import IcsSource
from connectors.calendars.ics_split import without_distant_events
from daemon.clock import FixedClock
from tests.conftest import local

WINDOW = Window(datetime(2026, 10, 3, tzinfo=timezone.utc), datetime(2027, 1, 31, tzinfo=timezone.utc))
BASE = datetime(2026, 11, 1, 10, tzinfo=timezone.utc)


def _source() -> IcsSource:
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    return IcsSource("main", "x.ics", None, ctx)


@st.composite
def event(draw: st.DrawFn) -> str:
    edge = draw(st.sampled_from([BASE, WINDOW.start, WINDOW.end]))      # near the window's edges too
    start = edge + timedelta(hours=draw(st.integers(-24 * 400, 24 * 400) if edge is BASE else st.integers(-80, 80)))
    form = draw(st.sampled_from(["utc", "floating", "tzid", "date", "broken"]))
    stamp = {"utc": start.strftime("%Y%m%dT%H%M%SZ"), "floating": start.strftime("%Y%m%dT%H%M%S"),
             "tzid": start.strftime("%Y%m%dT%H%M%S"), "date": start.strftime("%Y%m%d"),
             "broken": start.strftime("%Y%m%dT%H%M")}[form]
    params = {"tzid": ";TZID=Europe/Berlin", "date": ";VALUE=DATE"}.get(form, "")
    end = draw(st.sampled_from(["dtend", "duration", "none", "long"]))
    lines = [f"UID:u{draw(st.integers(0, 30))}" if draw(st.booleans()) else "",
             "SUMMARY:Jane Doe session with a rather long title so that folding has something to fold",
             f"DTSTART{params}:{stamp}"]
    if end == "dtend" and form != "date":
        lines.append(f"DTEND{params}:{(start + timedelta(minutes=50)).strftime(stamp_format(form))}")
    elif end == "duration":
        lines.append("DURATION:PT50M")
    elif end == "long" and form != "date":
        lines.append(f"DTEND{params}:{(start + timedelta(days=60)).strftime(stamp_format(form))}")
    if draw(st.integers(0, 5)) == 0:
        lines.append(draw(st.sampled_from(["RRULE:FREQ=WEEKLY;COUNT=20", "RECURRENCE-ID:" + stamp,
                                           "EXDATE:" + stamp, "RRULE:FREQ=WEEKLY;UNTL=2027"])))
    body = [ln for ln in lines if ln]
    if draw(st.booleans()):
        body = [ln[:30] + "\r\n " + ln[30:] if len(ln) > 30 else ln for ln in body]
    return "BEGIN:VEVENT\r\n" + "\r\n".join(body) + "\r\nEND:VEVENT\r\n"


def stamp_format(form: str) -> str:
    return "%Y%m%dT%H%M%SZ" if form == "utc" else "%Y%m%dT%H%M%S"


@settings(max_examples=60, deadline=None)
@given(st.lists(event(), max_size=12))
def test_skipping_distant_events_yields_the_same(events: list[str]) -> None:
    body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" + "".join(events) + "END:VCALENDAR\r\n").encode()
    source = _source()
    fast = source.parse_full(body, WINDOW)
    slow = source.parse_full(body, WINDOW, skip_distant=False)
    assert (sorted(fast[0], key=repr), fast[1], fast[2]) == (sorted(slow[0], key=repr), slow[1], slow[2])


def test_distant_one_off_events_are_left_out_of_the_text() -> None:
    near = "BEGIN:VEVENT\r\nUID:a\r\nDTSTART:20261110T150000Z\r\nEND:VEVENT\r\n"
    far = "BEGIN:VEVENT\r\nUID:b\r\nDTSTART:20240110T150000Z\r\nDTEND:20240110T155000Z\r\nEND:VEVENT\r\n"
    series = "BEGIN:VEVENT\r\nUID:c\r\nDTSTART:20240110T150000Z\r\nRRULE:FREQ=WEEKLY\r\nEND:VEVENT\r\n"
    text = "BEGIN:VCALENDAR\r\n" + near + far + series + "END:VCALENDAR\r\n"
    assert without_distant_events(text, WINDOW) == "BEGIN:VCALENDAR\r\n" + near + series + "END:VCALENDAR\r\n"
