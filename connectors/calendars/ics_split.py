"""Setting aside, before icalendar reads a feed, the events that cannot reach the window.

A practice's export carries years of history; parsing it costs time linear in every VEVENT.  A
VEVENT block that is plainly a single event (no RRULE, RDATE, EXDATE or RECURRENCE-ID, its UID
used by no other block) with a plain DTSTART (and DTEND) far enough outside the window is
dropped from the text.  So is a plain series (see ``_distant_series``) that starts after the
window or provably ends before it, with all its RECURRENCE-ID overrides, when every one of them
lies outside the window too.  Anything less plain is left for icalendar, so what a feed yields
is unchanged: the margin covers every UTC offset, and a block this scanner is unsure of stays.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta, timezone

from connectors.calendars.base import Window

MARGIN = timedelta(days=2)            # wider than any UTC offset of a floating or TZID time
_PLAIN = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})Z?)?$")
_PARAMS = re.compile(r'^(;[A-Za-z0-9-]+=("[^"]*"|[^;:"]*))*$')
_SERIES = {"RRULE", "RDATE", "EXDATE", "RECURRENCE-ID", "EXRULE"}


def without_distant_events(text: str, window: Window) -> str:
    """``text`` minus the one-off VEVENT blocks that lie wholly outside ``window`` (± MARGIN)."""
    lines = text.splitlines(keepends=True)
    blocks = _blocks(lines)
    if not blocks:
        return text
    entries = [_entries(lines[a:b]) for a, b in blocks]
    props = [_first(e) for e in entries]
    uses = Counter(p.get("UID", "") for p in props if p.get("UID"))
    drop = [i for i, p in enumerate(props) if _distant(p, uses, window)]
    drop += _distant_series(entries, props, window)
    if not drop:
        return text
    gone: set[int] = set()
    for i in drop:
        a, b = blocks[i]
        gone.update(range(a, b))
    return "".join(line for n, line in enumerate(lines) if n not in gone)


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(first, past-last) line numbers of each VEVENT block; [] when the nesting is unusual."""
    out: list[tuple[int, int]] = []
    start = -1
    for n, line in enumerate(lines):
        head = line.rstrip("\r\n").upper()
        if head == "BEGIN:VEVENT":
            if start >= 0:
                return []
            start = n
        elif head == "END:VEVENT":
            if start < 0:
                return []
            out.append((start, n + 1))
            start = -1
    return [] if start >= 0 else out


def _properties(block: list[str]) -> dict[str, str]:
    """The event's own properties (name → value; "" marks one given twice), nested parts skipped."""
    return _first(_entries(block))


def _first(entries: list[tuple[str, str, str]]) -> dict[str, str]:
    """Name → value; "" marks a property given twice or with parameters this scanner cannot read."""
    out: dict[str, str] = {}
    for name, params, value in entries:
        plain = _PARAMS.match(";" + params if params else "") is not None
        out[name] = "" if name in out or not plain else value.strip()
    return out


def _entries(block: list[str]) -> list[tuple[str, str, str]]:
    """The event's own properties as (NAME, parameters, value), in order, nested parts skipped."""
    out: list[tuple[str, str, str]] = []
    depth = 0
    unfolded: list[str] = []
    for line in block[1:-1]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += line[1:].rstrip("\r\n")
        else:
            unfolded.append(line.rstrip("\r\n"))
    for line in unfolded:
        upper = line.upper()
        if upper.startswith("BEGIN:"):
            depth += 1
        elif upper.startswith("END:"):
            depth -= 1
        elif depth == 0 and ":" in line:
            head, value = line.split(":", 1) if '"' not in line else _split_quoted(line)
            name, _, params = head.partition(";")
            out.append((name.strip().upper(), params, value))
    return out


def _split_quoted(line: str) -> tuple[str, str]:
    """Name-and-parameters, value: the first colon outside double quotes."""
    quoted = False
    for n, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            return line[:n], line[n + 1:]
    return line, ""


def _distant(p: dict[str, str], uses: Counter[str], window: Window) -> bool:
    if _SERIES & p.keys() or (p.get("UID") and uses[p["UID"]] > 1):
        return False
    start = _plain_time(p.get("DTSTART"))
    if start is None:
        return False
    if start > window.end + MARGIN:
        return True
    if "DURATION" in p:
        return False
    end = _plain_time(p["DTEND"]) if "DTEND" in p else start + timedelta(days=1)
    return end is not None and max(start, end) < window.start - MARGIN


def _plain_time(value: str | None) -> datetime | None:
    """A DATE or DATE-TIME value read as UTC (the margin absorbs its real offset); None if unsure."""
    m = _PLAIN.match(value or "")
    if m is None:
        return None
    try:
        y, mo, d, h, mi, sec = (int(g or 0) for g in m.groups())
        return datetime(y, mo, d, h, mi, sec, tzinfo=timezone.utc)
    except ValueError:
        return None


# -- series ------------------------------------------------------------------------------------
SLACK = timedelta(days=1)             # on top of MARGIN for a series: a start's and an end's offsets
_DAY = re.compile(r"^(MO|TU|WE|TH|FR|SA|SU)$")
_RULE_KEYS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST", "BYDAY", "BYMONTH", "BYMONTHDAY", "BYYEARDAY",
              "BYWEEKNO", "BYHOUR", "BYMINUTE", "BYSECOND", "BYSETPOS"}
_SIMPLE_KEYS = {"FREQ", "INTERVAL", "COUNT", "WKST", "BYDAY"}      # COUNT bounded without expanding
_FREQS = {"HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"}          # SECONDLY, MINUTELY: damaged
_ONE = ("DTSTART", "DTEND", "RRULE", "RECURRENCE-ID", "UID")         # given once, or unsure


def _distant_series(entries: list[list[tuple[str, str, str]]], props: list[dict[str, str]],
                    window: Window) -> list[int]:
    """Blocks of plain series (one RRULE master and its RECURRENCE-ID overrides) that cannot reach
    ``window``.  An override goes when its own times and the occurrence it replaces both lie
    outside the window (a moved one may move into it) and no other override names a nearby
    RECURRENCE-ID (the one with the higher SEQUENCE would win); the master goes with all of its
    overrides when it starts after the window or provably ends before it.  A series with an
    RDATE, EXRULE, RANGE, DURATION, a time or rule this scanner cannot read plainly, or anything
    unusual, stays whole."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(props):
        if p.get("UID"):
            groups.setdefault(p["UID"], []).append(i)
    out: list[int] = []
    for group in groups.values():
        masters = [i for i in group if "RRULE" in props[i] and "RECURRENCE-ID" not in props[i]]
        if len(masters) != 1 or any(not _plain_block(entries[i]) for i in group):
            continue
        master = props[masters[0]]
        rule, length = _rule(master.get("RRULE", "")), _length(master)
        overrides = [i for i in group if i != masters[0]]
        rids = [_plain_time(props[i].get("RECURRENCE-ID")) for i in overrides]
        if rule is None or length is None or any(
                t is None or "RRULE" in props[i] or "EXDATE" in props[i] for i, t in zip(overrides, rids)):
            continue
        gone = [i for i, t in zip(overrides, rids) if t is not None and _alone(t, rids)
                and _distant_override(props[i], t, length, window)]
        out.extend(gone)
        if len(gone) == len(overrides) and _master_distant(master, rule, length, window):
            out.append(masters[0])
    return out


def _alone(rid: datetime, rids: list[datetime | None]) -> bool:
    """Whether ``rid`` is the only RECURRENCE-ID of the series within two margins (read as UTC)."""
    return sum(1 for t in rids if t is not None and abs(t - rid) <= 2 * MARGIN) == 1


def _plain_block(entries: list[tuple[str, str, str]]) -> bool:
    """Properties this scanner can read whole: no RDATE, EXRULE, DURATION, RANGE; times once each."""
    seen: Counter[str] = Counter(name for name, _, _ in entries)
    if any(seen[n] > 1 for n in _ONE) or {"RDATE", "EXRULE", "DURATION"} & seen.keys():
        return False
    for name, params, value in entries:
        if name in ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RRULE", "UID"):
            if _PARAMS.match(";" + params if params else "") is None:
                return False
            if name == "RRULE" and params or "RANGE=" in params.upper():
                return False
        if name in ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE"):
            if not all(_time_of(params, v) is not None for v in value.strip().split(",")):
                return False      # a time icalendar may not read: it decides what the block means
    return True


def _time_of(params: str, value: str) -> datetime | None:
    """:func:`_plain_time`, None also when a VALUE parameter does not fit the value."""
    kind = re.search(r"(?i)(?:^|;)VALUE=([A-Z-]*)", params)
    at = _plain_time(value.strip())
    if at is None or kind is None:
        return at
    length = len(value.strip())
    return at if (kind.group(1).upper(), length == 8) in (("DATE", True), ("DATE-TIME", False)) else None


def _length(p: dict[str, str]) -> timedelta | None:
    """The master's duration read as UTC, a day at least; None when unsure."""
    start = _plain_time(p.get("DTSTART"))
    end = _plain_time(p["DTEND"]) if "DTEND" in p else start
    if start is None or end is None:
        return None
    return max(end - start, timedelta(days=1))


def _master_distant(p: dict[str, str], rule: dict[str, str], length: timedelta, window: Window) -> bool:
    """Whether every occurrence of the master lies outside ``window``: it starts after the window,
    or its last occurrence (bounded without expanding) ends before it."""
    start = _plain_time(p.get("DTSTART"))
    if start is None:
        return False
    if start > window.end + MARGIN:
        return True
    last = _last_start(start, rule)
    try:
        return last is not None and last + length + SLACK < window.start - MARGIN
    except OverflowError:
        return False


def _rule(value: str) -> dict[str, str] | None:
    """An RRULE's parts (KEY → value), None when it is not plainly well-formed."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        key, eq, v = part.partition("=")
        key = key.strip().upper()
        if not eq or key not in _RULE_KEYS or key in out or not v.strip():
            return None
        out[key] = v.strip().upper()
    if out.get("FREQ") not in _FREQS or ("COUNT" in out and "UNTIL" in out):
        return None
    for key in ("INTERVAL", "COUNT"):
        if key in out and (not out[key].isdigit() or int(out[key]) < 1):
            return None
    return out


def _last_start(start: datetime, rule: dict[str, str]) -> datetime | None:
    """A time no occurrence of the rule starts after (read as UTC), None when unbounded or unsure."""
    try:
        if "UNTIL" in rule:
            until = _plain_time(rule["UNTIL"])
            return None if until is None else until + timedelta(days=1)
        if "COUNT" not in rule or not rule.keys() <= _SIMPLE_KEYS:
            return None            # no end, or BY-rules that can skip periods: expand to know
        count, interval = int(rule["COUNT"]), int(rule.get("INTERVAL", "1"))
        if rule["FREQ"] == "WEEKLY":
            days = rule.get("BYDAY")
            if days is not None and not all(_DAY.match(d) for d in days.split(",")):
                return None
            # every week of the rule holds each of its BYDAY weekdays: COUNT weeks hold them all
            return start + timedelta(weeks=(count + 1) * interval)
        if rule["FREQ"] == "DAILY" and "BYDAY" not in rule:
            return start + timedelta(days=(count + 1) * interval)
        return None
    except (OverflowError, ValueError):
        return None


def _distant_override(p: dict[str, str], rid: datetime, length: timedelta, window: Window) -> bool:
    """Whether an override's own times, and those of the occurrence it replaces, lie outside ``window``."""
    start = _plain_time(p.get("DTSTART"))
    end = _plain_time(p["DTEND"]) if "DTEND" in p else start
    if start is None or end is None:
        return False
    try:
        return all(at > window.end + MARGIN or max(until, at + length) + SLACK < window.start - MARGIN
                   for at, until in ((start, end), (rid, rid)))
    except OverflowError:
        return False
