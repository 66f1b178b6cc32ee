"""Incremental iCal polls (connectors.calendars.ics_delta) give what a full parse gives.

A random feed (single events and weekly series with moved or cancelled overrides; UTC,
TZID, custom-VTIMEZONE, floating and all-day times; X-WR-TIMEZONE; now and then an event
too damaged to read) goes through random edits: add, remove, move, add or drop an override,
change an event's zone, change the VTIMEZONE or X-WR-TIMEZONE, reorder the blocks, change the
line folding, retitle.  After each edit the source polls with what it kept; the occurrences it
has reported (a snapshot, then deltas applied as the engine applies them) must equal a full
parse of the same text, and a tombstone is ``deleted`` exactly when its event gives nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.calendars.base import FetchResult, Kept, Occurrence, SourceContext, Window, apply_kept
from connectors.calendars.ics import IcsSource
from daemon.clock import FixedClock
from daemon.errors import SourceError
from tests.conftest import local

WINDOW = Window(datetime(2026, 10, 3, tzinfo=timezone.utc), datetime(2027, 1, 31, tzinfo=timezone.utc))
BASE = datetime(2026, 11, 1, 10)
FORMS = ["utc", "tzid", "custom", "floating", "date"]
ZONE = """BEGIN:VTIMEZONE\r\nTZID:Practice/Zone\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r
TZOFFSETFROM:{o}\r\nTZOFFSETTO:{o}\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"""


@dataclass
class Event:
    uid: str
    hours: int                      # start, hours from BASE
    form: str
    count: int = 0                  # 0: a single event; else a weekly series of ``count``
    overrides: dict[int, str] = field(default_factory=dict)   # occurrence n → "moved" | "cancelled"
    title: str = "Jane Doe"
    broken: bool = False
    until: bool = False             # the series ends by UNTIL (a DATE, or UTC) instead of COUNT


@dataclass
class Feed:
    events: dict[str, Event]
    seed: int = 0                   # block order
    fold: bool = False
    offset: str = "+0100"           # the custom VTIMEZONE's
    xwr: str = ""                   # X-WR-TIMEZONE

    def text(self) -> str:
        blocks = [b for e in self.events.values() for b in _blocks(e, self.fold)]
        blocks.sort(key=lambda b: hashlib.sha1(f"{self.seed}|{b}".encode()).hexdigest())
        head = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//delta//EN\r\n"
        if self.xwr:
            head += f"X-WR-TIMEZONE:{self.xwr}\r\n"
        return head + ZONE.format(o=self.offset) + "".join(blocks) + "END:VCALENDAR\r\n"


def _stamp(e: Event, moment: datetime) -> tuple[str, str]:
    """(parameters, value) of a time in the event's form."""
    if e.form == "date":
        return ";VALUE=DATE", moment.strftime("%Y%m%d")
    if e.form == "utc":
        return "", moment.strftime("%Y%m%dT%H%M%SZ")
    params = {"tzid": ";TZID=Europe/Berlin", "custom": ";TZID=Practice/Zone"}.get(e.form, "")
    return params, moment.strftime("%Y%m%dT%H%M%S")


def _block(e: Event, start: datetime, extra: list[str], fold: bool) -> str:
    step = timedelta(days=1) if e.form == "date" else timedelta(minutes=50)
    p, v = _stamp(e, start)
    pe, ve = _stamp(e, start + step)
    if e.broken:
        v = v[:-2]
    lines = [f"UID:{e.uid}", f"SUMMARY:{e.title} weekly session, with a title long enough to fold",
             f"DTSTART{p}:{v}", f"DTEND{pe}:{ve}", *extra]
    if fold:
        lines = [ln[:20] + "\r\n " + ln[20:] if len(ln) > 20 else ln for ln in lines]
    return "BEGIN:VEVENT\r\n" + "\r\n".join(lines) + "\r\nEND:VEVENT\r\n"


def _blocks(e: Event, fold: bool) -> list[str]:
    start = BASE + timedelta(hours=e.hours)
    if e.form == "date":
        start = start.replace(hour=0)
    if not e.count:
        return [_block(e, start, [], fold)]
    last = start + timedelta(weeks=e.count - 1)
    until = last.strftime("%Y%m%d") if e.form == "date" else (last + timedelta(hours=12)).strftime("%Y%m%dT%H%M%SZ")
    rule = f"RRULE:FREQ=WEEKLY;UNTIL={until}" if e.until else f"RRULE:FREQ=WEEKLY;COUNT={e.count}"
    out = [_block(e, start, [rule], fold)]
    for n, how in sorted(e.overrides.items()):
        original = start + timedelta(weeks=n)
        p, v = _stamp(e, original)
        rid = f"RECURRENCE-ID{p}:{v}"
        if how == "moved":
            out.append(_block(e, original + timedelta(days=1), [rid], fold))
        else:
            out.append(_block(e, original, [rid, "STATUS:CANCELLED"], fold))
    return out


@st.composite
def events(draw: st.DrawFn, uid: str) -> Event:
    hours = draw(st.one_of(st.integers(-24 * 40, 24 * 100), st.integers(-24 * 500, 24 * 500)))
    count = draw(st.sampled_from([0, 0, 3, 12]))
    return Event(uid, hours, draw(st.sampled_from(FORMS)), count,
                 broken=draw(st.integers(0, 30)) == 0, until=draw(st.booleans()))


EDITS = ["add", "remove", "move", "override", "drop_override", "zone_of_event", "vtimezone", "xwr",
         "reorder", "fold", "retitle", "end_outside"]


def edit(draw: st.DrawFn, feed: Feed, n: int) -> Feed:
    kind = draw(st.sampled_from(EDITS))
    uids = sorted(feed.events)
    evs = dict(feed.events)
    if kind == "add" or not uids:
        uid = f"ev-{n}@test"
        evs[uid] = draw(events(uid))
        return replace(feed, events=evs)
    uid = draw(st.sampled_from(uids))
    e = evs[uid]
    if kind == "remove":
        del evs[uid]
    elif kind == "move":
        evs[uid] = replace(e, hours=e.hours + draw(st.integers(-24 * 30, 24 * 30)))
    elif kind == "override" and e.count:
        evs[uid] = replace(e, overrides={**e.overrides, draw(st.integers(0, e.count - 1)):
                                         draw(st.sampled_from(["moved", "cancelled"]))})
    elif kind == "drop_override" and e.overrides:
        gone = draw(st.sampled_from(sorted(e.overrides)))
        evs[uid] = replace(e, overrides={k: v for k, v in e.overrides.items() if k != gone})
    elif kind == "zone_of_event":
        evs[uid] = replace(e, form=draw(st.sampled_from(FORMS)))
    elif kind == "end_outside" and e.count:
        # the series ends before the window, or starts after it, or comes back: cut before parsing or not
        hours = draw(st.sampled_from([-24 * 7 * (e.count + 4), -24 * 7 * e.count - 24 * 30, 24 * 95, 24 * 130]))
        evs[uid] = replace(e, hours=hours, until=draw(st.booleans()))
    elif kind == "retitle":
        evs[uid] = replace(e, title=draw(st.sampled_from(["Jane Doe", "Omar Haddad", "Cancelled: Jane Doe"])))
    elif kind == "vtimezone":
        return replace(feed, offset="+0200" if feed.offset == "+0100" else "+0100")
    elif kind == "xwr":
        return replace(feed, xwr=draw(st.sampled_from(["", "Europe/Berlin", "America/Chicago"])))
    elif kind == "reorder":
        return replace(feed, seed=feed.seed + 1)
    elif kind == "fold":
        return replace(feed, fold=not feed.fold)
    return replace(feed, events=evs)


class Poller:
    """The source as the engine drives it: state and kept records carried between polls."""

    def __init__(self, path: Path) -> None:
        self.records: dict[str, tuple[str, str]] = {}
        ctx = SourceContext(base_dir=path.parent, timezone=ZoneInfo("America/New_York"),
                            clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=path.parent,
                            memo=lambda name: Kept.of(dict(self.records)))
        self.source = IcsSource("main", str(path), None, ctx)
        self.state: dict[str, Any] = {}
        self.view: dict[str, Occurrence] = {}
        self.deltas = 0

    def poll(self) -> FetchResult:
        result = self.source.fetch(WINDOW, self.state)
        self.state = result.state
        apply_kept(self.records, result)
        if result.occurrences is None:
            return result
        if result.complete:
            kept = {k: o for k, o in self.view.items() if o.uid in result.unreadable}
            self.view = {o.key: o for o in result.occurrences} | kept
            return result
        self.deltas += 1
        for o in result.occurrences:
            if o.tombstone:
                self.view.pop(o.key, None)
            else:
                self.view[o.key] = o
        return result


def _inside(view: dict[str, Occurrence]) -> dict[str, Occurrence]:
    return {k: o for k, o in view.items() if o.start is not None and WINDOW.start <= o.start < WINDOW.end}


def _full(source: IcsSource, text: str) -> tuple[dict[str, Occurrence], set[str]]:
    occurrences, _, unreadable = source.parse_full(text.encode(), WINDOW)
    whole = source.parse_full(text.encode(), WINDOW, skip_distant=False)     # nothing set aside
    assert (sorted(occurrences, key=repr), unreadable) == (sorted(whole[0], key=repr), whole[2])
    return {o.key: o for o in occurrences}, unreadable


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_incremental_polls_equal_a_full_parse_over_random_edits(tmp_path: Path, data: st.DataObject) -> None:
    path = tmp_path / "feed.ics"
    feed = Feed({f"ev-{i}@test": data.draw(events(f"ev-{i}@test")) for i in range(data.draw(st.integers(2, 8)))})
    poller = Poller(path)
    for n in range(data.draw(st.integers(1, 12))):
        if n:
            feed = edit(data.draw, feed, n)
        text = feed.text()
        path.write_text(text, newline="")
        try:
            full, unreadable = _full(poller.source, text)
        except SourceError:
            with pytest.raises(SourceError):
                poller.poll()        # the engine keeps its state: the next poll starts from it
            continue
        result = poller.poll()
        if unreadable:
            assert result.occurrences is None or (result.complete and result.unreadable == unreadable)
        mine = {k: o for k, o in poller.view.items() if o.uid not in unreadable}
        theirs = {k: o for k, o in full.items() if o.uid not in unreadable}
        assert _inside(mine) == _inside(theirs)
        # Outside the window (a floating time near its edge) the engine never infers a vanish, from
        # a snapshot or a delta: what was seen there stays; everything the full parse gives is seen.
        assert theirs.items() <= mine.items()
        if result.occurrences is not None and not result.complete:
            present = {o.uid for o in full.values()}
            for t in result.occurrences:
                if t.tombstone:
                    assert t.deleted == (t.uid not in present), t


def test_one_changed_event_is_the_only_one_parsed(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = Feed({f"ev-{i}@test": Event(f"ev-{i}@test", 24 * i, "tzid", count=12 if i % 2 else 0)
                 for i in range(10)})
    poller = Poller(path)
    path.write_text(feed.text(), newline="")
    first = poller.poll()
    assert first.complete and len(poller.records) == 10
    feed.events["ev-3@test"] = replace(feed.events["ev-3@test"], overrides={2: "cancelled"})
    path.write_text(feed.text(), newline="")
    second = poller.poll()
    assert not second.complete
    assert {o.uid for o in second.occurrences or []} == {"ev-3@test"}
    cancelled = [o for o in second.occurrences or [] if o.status == "cancelled"]
    assert len(cancelled) == 1
    del feed.events["ev-4@test"]
    path.write_text(feed.text(), newline="")
    third = poller.poll()
    assert not third.complete and third.kept == {"ev-4@test": None}
    assert [(o.key, o.tombstone, o.deleted) for o in third.occurrences or []] == [("ev-4@test", True, True)]
    feed.seed += 1              # only the order of the blocks: at most the series and its override again
    path.write_text(feed.text(), newline="")
    fourth = poller.poll()
    assert fourth.occurrences is None or (not fourth.complete and {o.uid for o in fourth.occurrences} <= {"ev-3@test"})
    feed.offset = "+0200"       # a time zone changed: the whole feed again
    path.write_text(feed.text(), newline="")
    assert poller.poll().complete


def test_kept_records_that_do_not_match_the_state_mean_a_full_parse(tmp_path: Path) -> None:
    path = tmp_path / "feed.ics"
    feed = Feed({f"ev-{i}@test": Event(f"ev-{i}@test", 24 * i, "utc") for i in range(6)})
    poller = Poller(path)
    path.write_text(feed.text(), newline="")
    poller.poll()
    poller.records.pop("ev-1@test")          # lost (a restored backup, another version's store)
    feed.events["ev-2@test"] = replace(feed.events["ev-2@test"], title="Omar Haddad")
    path.write_text(feed.text(), newline="")
    result = poller.poll()
    assert result.complete and result.kept_reset and len(poller.records) == 6


def test_only_the_changed_events_records_are_read_and_a_missing_one_means_a_full_parse(tmp_path: Path) -> None:
    """A delta asks the store for the data of the events it changed or lost, not of every event
    (the hashes decide which); a record gone between the two reads sends it to the full parse."""
    path = tmp_path / "feed.ics"
    feed = Feed({f"ev-{i}@test": Event(f"ev-{i}@test", 24 * i, "utc") for i in range(6)})
    poller = Poller(path)
    path.write_text(feed.text(), newline="")
    poller.poll()
    asked: list[list[str]] = []
    records = poller.records

    def memo(name: str) -> Kept:
        plain = Kept.of(dict(records))
        return Kept(plain.hashes, lambda ids: asked.append(sorted(ids)) or {k: records[k][1] for k in ids
                                                                             if k != "ev-5@test"})

    poller.source.context = replace(poller.source.context, memo=memo)
    feed.events["ev-2@test"] = replace(feed.events["ev-2@test"], title="Omar Haddad")
    path.write_text(feed.text(), newline="")
    result = poller.poll()
    assert not result.complete and asked == [["ev-2@test"]]
    del feed.events["ev-5@test"]            # its record is the one the store "lost"
    path.write_text(feed.text(), newline="")
    result = poller.poll()
    assert asked[-1] == ["ev-5@test"] and result.complete
