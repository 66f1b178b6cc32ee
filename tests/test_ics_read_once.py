"""Reading occurrences without the library's per-occurrence copies, and setting aside what cannot
reach the window, change nothing: over every corpus file and random feeds, the occurrences read
from the library's own occurrences (properties read once per component) equal those read from
``between``'s copies, and a feed cut before parsing yields what the whole feed yields."""

from __future__ import annotations

import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.calendars import ics
from connectors.calendars.base import Occurrence, SourceContext, Window
from connectors.calendars.ics import IcsSource
from connectors.calendars.ics_values import recurring_uids
from daemon.clock import FixedClock
from daemon.errors import SourceError
from tests.conftest import CORPUS, local
from tests.test_ics_split import event
from tests.test_ics_split_series import calendar, series

WINDOWS = [Window(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2027, 2, 28, tzinfo=timezone.utc)),
           Window(datetime(2014, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 1, tzinfo=timezone.utc))]
FILES = sorted(CORPUS.rglob("*.ics")) if CORPUS.is_dir() else []


def _source(where: Path) -> IcsSource:
    ctx = SourceContext(base_dir=where, timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=where)
    return IcsSource("main", "x.ics", None, ctx)


def _both_reads(source: IcsSource, text: str, window: Window) -> tuple[list[Any], list[Any]] | None:
    """(read from the library's occurrences, read from between()'s copies), sorted; None if unreadable."""
    import icalendar
    import recurring_ical_events

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cals = icalendar.Calendar.from_ical(text, multiple=True)
        except Exception:
            return None
        fast: list[Occurrence | None] = []
        slow: list[Occurrence | None] = []
        for cal in cals:
            try:
                query = recurring_ical_events.of(cal, skip_bad_series=True)
                recurring = recurring_uids(cal)
                found = ics._occurrences_between(query, window)
                copies = query.between(window.start, window.end)
            except Exception:
                continue
            assert all(ics._plain_source(o) is not None for o in found if type(o).__name__ == "Occurrence")
            fast += [source._from_library(o, query, recurring, {}) for o in found]
            slow += [source._occurrence(c, recurring) for c in copies]
    return sorted(fast, key=repr), sorted(slow, key=repr)


def _same_cut_or_not(source: IcsSource, body: bytes, window: Window) -> None:
    try:
        cut = source.parse_full(body, window)
    except SourceError as exc:
        with pytest.raises(SourceError) as whole:
            source.parse_full(body, window, skip_distant=False)
        assert whole.value.reason == exc.reason
        return
    whole_ = source.parse_full(body, window, skip_distant=False)
    assert (sorted(cut[0], key=repr), cut[1], cut[2]) == (sorted(whole_[0], key=repr), whole_[1], whole_[2])


@pytest.mark.skipif(not FILES, reason="../shared/corpus is not present in this checkout")
@pytest.mark.parametrize("window", WINDOWS, ids=["present", "past"])
def test_corpus_files_read_the_same_either_way(window: Window) -> None:
    read = 0
    for path in FILES:
        source = _source(path.parent)
        body = path.read_bytes()
        _same_cut_or_not(source, body, window)
        both = _both_reads(source, body.decode("utf-8", "replace"), window)
        if both is not None:
            assert both[0] == both[1], path.name
            read += len(both[0])
    assert read > 100          # the corpus gave occurrences to compare


@settings(max_examples=80, deadline=None)
@given(st.lists(event(), max_size=8), st.lists(series(), max_size=4))
def test_random_feeds_read_the_same_either_way(events: list[str], feeds: list[list[str]]) -> None:
    text = calendar(*events, *(b for blocks in feeds for b in blocks))
    source = _source(Path("."))
    window = Window(datetime(2026, 10, 3, tzinfo=timezone.utc), datetime(2027, 1, 31, tzinfo=timezone.utc))
    _same_cut_or_not(source, text.encode(), window)
    both = _both_reads(source, text, window)
    if both is not None:
        assert both[0] == both[1]


def test_what_is_not_a_plain_library_occurrence_is_read_as_a_copy() -> None:
    """Another library version's items (here: between()'s copies themselves) are read as copies."""
    import icalendar
    import recurring_ical_events

    text = calendar(*series_blocks())
    cal = icalendar.Calendar.from_ical(text)
    query = recurring_ical_events.of(cal)
    window = Window(datetime(2026, 10, 3, tzinfo=timezone.utc), datetime(2027, 1, 31, tzinfo=timezone.utc))
    copies = query.between(window.start, window.end)
    source, recurring = _source(Path(".")), recurring_uids(cal)
    assert copies and all(ics._plain_source(c) is None for c in copies)
    assert [source._from_library(c, query, recurring, {}) for c in copies] == \
        [source._occurrence(c, recurring) for c in copies]


def series_blocks() -> list[str]:
    from tests.test_ics_split_series import vevent

    return [vevent("s", "20261005T100000", "RRULE:FREQ=WEEKLY;COUNT=4", end="20261005T105000"),
            vevent("s", "20261013T100000", "RECURRENCE-ID;TZID=America/New_York:20261012T100000",
                   end="20261013T105000")]


@pytest.mark.parametrize("text,whole", [
    ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", True),
    ("BEGIN:VCALENDAR\r\nend:vcalendar\r\n", True),
    ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\njunk after\r\n", True),
    ("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDESCRIPTION:see END:VCALENDAR", False),
    ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n", False),
    ("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nX:END:VCALENDAR\r\n", True),
])
def test_a_feed_ends_every_calendar_only_with_an_end_line(text: str, whole: bool) -> None:
    assert ics._ends_every_calendar(text) is whole
