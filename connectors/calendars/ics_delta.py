"""Incremental polls of an iCal feed: only the events whose text changed are parsed.

The feed is split into its frame (calendar properties, time zones) and one group per UID
(connectors.calendars.ics_groups).  The store keeps, per group, the hash of its text and the
occurrence keys (with their starts) it gave over the window; ``state`` keeps the frame's hash,
the day of the window and a fingerprint of the kept hashes.  A poll whose frame and window day
are those of the last one parses a calendar of the frame and the changed groups only, and
returns a delta like CalDAV's: their occurrences, and tombstones for the keys they (or the
groups that vanished) no longer give inside the window, ``deleted`` when their event gives
nothing there any more.  Everything else is a complete parse of the whole feed, which also
rebuilds what is kept: the first poll, a new day, a changed time zone or calendar property,
kept records that do not match ``state``, an event too damaged to read, a feed whose window
is empty, or one this splitter is unsure of.  Both roads give the engine the same sessions
(tests/test_ics_delta.py checks it over random edits).
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from connectors.calendars.base import FetchResult, Kept, Occurrence, Window
from connectors.calendars.caldav_sync import state_entry, tombstones_for
from connectors.calendars.ics_groups import Feed, fingerprint, split_feed
from daemon.errors import SourceError

if TYPE_CHECKING:
    from connectors.calendars.ics import IcsSource

KEPT = ("sha256", "window_day", "frame", "groups", "count")   # what an unchanged poll carries on


def poll(src: IcsSource, body: bytes, window: Window, state: dict[str, Any],
         new_state: dict[str, Any]) -> FetchResult:
    """The feed's occurrences (a delta where possible); raises SourceError.

    ``new_state`` already holds the HTTP validators, ``sha256`` and ``window_day`` of this poll."""
    text = src.prepare(body)
    memo = src.context.memo
    feed = split_feed(text) if memo is not None else None
    if feed is not None and memo is not None and state.get("groups") and state.get("frame") == feed.frame \
            and state.get("window_day") == new_state["window_day"]:
        rows = memo(src.name)
        if fingerprint(list(rows.hashes.values())) == state["groups"]:
            result = _delta(src, feed, window, rows, int(state.get("count") or 0), new_state)
            if result is not None:
                return result
    return _full(src, feed, text, window, new_state, keeps=memo is not None)


def _full(src: IcsSource, feed: Feed | None, text: str, window: Window, new_state: dict[str, Any],
          *, keeps: bool) -> FetchResult:
    occurrences, warnings, unreadable = src.parse_text(text, window)
    result = FetchResult(occurrences, new_state, complete=True, warnings=warnings, unreadable=unreadable,
                         kept={} if keeps else None, kept_reset=keeps)
    if feed is None or unreadable:
        return result     # nothing kept: the next poll parses the whole feed again
    by_uid = _by_uid(occurrences)
    if not by_uid.keys() <= feed.groups.keys():
        return result
    kept: dict[str, tuple[str, str] | None] = {}
    count = 0
    for uid, g in feed.groups.items():
        entry = _entry(by_uid.get(uid, []))
        count += len(entry["keys"])
        kept[uid] = (g.hash, _text(entry))
    new_state.update(frame=feed.frame, groups=fingerprint([r[0] for r in kept.values() if r]), count=count)
    result.kept = kept
    return result


def _delta(src: IcsSource, feed: Feed, window: Window, rows: Kept, count: int,
           new_state: dict[str, Any]) -> FetchResult | None:
    """The changed groups' occurrences and tombstones, or None when a full parse must decide."""
    from connectors.calendars.ics import MAX_OCCURRENCES

    known = rows.hashes
    changed = [uid for uid, g in feed.groups.items() if known.get(uid, "") != g.hash]
    gone = [uid for uid in known if uid not in feed.groups]
    if not changed and not gone:      # the bytes changed, no event did (folding, order, whitespace)
        new_state.update(frame=feed.frame, groups=fingerprint(list(known.values())), count=count)
        return FetchResult(None, new_state)
    if 2 * len(changed) > len(feed.groups):
        return None                   # most of the feed changed: one parse of it all is cheaper
    try:
        occurrences, warnings, unreadable = src.parse_text(feed.text_of(changed), window)
    except SourceError:
        return None                   # the whole feed decides what a broken event means
    if warnings or unreadable:
        return None
    by_uid = _by_uid(occurrences)
    if not by_uid.keys() <= set(changed):
        return None
    before = rows.data(changed + gone)       # what the changed and vanished events gave last time
    if any(uid not in before for uid in gone) or any(uid in known and uid not in before for uid in changed):
        return None                   # a record went missing meanwhile: the full parse decides
    out: list[Occurrence] = list(occurrences)
    kept: dict[str, tuple[str, str] | None] = {}
    for uid in changed:
        new = by_uid.get(uid, [])
        entry = _entry(new)
        if uid in before:
            old = json.loads(before[uid])
            count -= len(old.get("keys") or {})
            out.extend(tombstones_for(old, set(entry["keys"]), window, deleted=not new))
        count += len(entry["keys"])
        kept[uid] = (feed.groups[uid].hash, _text(entry))
    for uid in gone:
        old = json.loads(before[uid])
        count -= len(old.get("keys") or {})
        out.extend(tombstones_for(old, set(), window, deleted=True))
        kept[uid] = None
    if count <= 0 or count > MAX_OCCURRENCES:
        return None                   # an empty window or a runaway one: the full parse says so
    hashes = dict(known)
    hashes.update({uid: r[0] for uid, r in kept.items() if r is not None})
    for uid in gone:
        hashes.pop(uid, None)
    new_state.update(frame=feed.frame, groups=fingerprint(list(hashes.values())), count=count)
    return FetchResult(out, new_state, complete=False, kept=kept)


def _by_uid(occurrences: list[Occurrence]) -> dict[str, list[Occurrence]]:
    out: dict[str, list[Occurrence]] = defaultdict(list)
    for o in occurrences:
        out[o.uid].append(o)
    return out


def _entry(occurrences: list[Occurrence]) -> dict[str, Any]:
    """What a group gave: its UIDs and occurrence keys with their starts (ids and times only)."""
    entry = state_entry("", occurrences)
    del entry["etag"]
    return entry


def _text(entry: dict[str, Any]) -> str:
    return json.dumps(entry, separators=(",", ":"))
