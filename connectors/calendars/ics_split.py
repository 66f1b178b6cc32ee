"""Setting aside, before icalendar reads a feed, the one-off events that cannot reach the window.

A practice's export carries years of history; parsing it costs time linear in every VEVENT.  A
VEVENT block that is plainly a single event (no RRULE, RDATE, EXDATE or RECURRENCE-ID, its UID
used by no other block) with a plain DTSTART (and DTEND) far enough outside the window is
dropped from the text.  Anything less plain is left for icalendar, so what a feed yields is
unchanged: the margin covers every UTC offset, and a block this scanner is unsure of stays.
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
    props = [_properties(lines[a:b]) for a, b in blocks]
    uses = Counter(p.get("UID", "") for p in props if p.get("UID"))
    drop = [i for i, p in enumerate(props) if _distant(p, uses, window)]
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
    out: dict[str, str] = {}
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
            name = name.strip().upper()
            plain = _PARAMS.match(";" + params if params else "") is not None
            out[name] = "" if name in out or not plain else value.strip()
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
