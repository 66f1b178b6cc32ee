"""A feed split into its top-level parts without a full parse, for incremental polls.

One VCALENDAR's text becomes: its *frame* (the calendar's own properties, its VTIMEZONEs and
any other components, and what trails END:VCALENDAR) and its *groups*: the VEVENT blocks of one
UID (a series with its RECURRENCE-ID overrides, or a single event), each with a SHA-256 of its
text.  A group whose hash is unchanged since the last poll yields what it yielded then; only the
others are given to icalendar.  Anything this scanner is unsure of (several calendars, unusual
nesting, a block without a plain UID, a UID with escapes) gives None: the caller parses the
whole feed, which is always correct.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from connectors.calendars.ics_split import _properties


@dataclass
class Group:
    blocks: list[str] = field(default_factory=list)    # each VEVENT block's text, in feed order

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for block in self.blocks:
            h.update(_unfolded(block).encode("utf-8", "surrogatepass"))
        return h.hexdigest()


@dataclass
class Feed:
    head: list[str]                  # BEGIN:VCALENDAR and the calendar's property lines
    zones: list[str]                 # the VTIMEZONE blocks' lines
    frame: str                       # SHA-256 of everything that is not a VEVENT block
    groups: dict[str, Group]         # UID → its blocks

    def text_of(self, uids: list[str]) -> str:
        """A calendar of the frame's properties and time zones and only these groups' events."""
        parts = [*self.head, *self.zones]
        for uid in uids:
            parts.extend(self.groups[uid].blocks)
        parts.append("END:VCALENDAR\r\n")
        return "".join(parts)


def split_feed(text: str) -> Feed | None:
    """``text`` (one VCALENDAR, as ``IcsSource`` prepared it) in parts, or None when unsure."""
    head: list[str] = []
    zones: list[str] = []
    rest: list[str] = []            # other components and trailing text: only hashed
    groups: dict[str, Group] = {}
    depth, ended = 0, False
    block: list[str] = []
    kind = ""
    for line in text.splitlines(keepends=True):
        upper = line.rstrip("\r\n").upper()
        if ended:
            if upper.strip() == "BEGIN:VCALENDAR":
                return None                     # several calendars: each is read on its own
            rest.append(line)
        elif depth == 0:
            if upper != "BEGIN:VCALENDAR" or head:
                return None
            head.append(line)
            depth = 1
        elif depth == 1:
            if upper.startswith("BEGIN:"):
                block, kind, depth = [line], upper[6:].strip(), 2
            elif upper == "END:VCALENDAR":
                ended, depth = True, 0
            elif upper.startswith("END:"):
                return None
            else:
                head.append(line)
        else:
            block.append(line)
            if upper.startswith("BEGIN:"):
                depth += 1
            elif upper.startswith("END:"):
                depth -= 1
                if depth == 1:
                    if upper[4:].strip() != kind:
                        return None
                    if kind == "VEVENT":
                        uid = _uid(block)
                        if uid is None:
                            return None
                        groups.setdefault(uid, Group()).blocks.append("".join(block))
                    elif kind == "VTIMEZONE":
                        zones.extend(block)
                    else:
                        rest.extend(block)
    if not ended:
        return None
    frame = hashlib.sha256(_unfolded("".join([*head, "\0", *zones, "\0", *rest])).encode("utf-8", "surrogatepass"))
    return Feed(head=head, zones=zones, frame=frame.hexdigest(), groups=groups)


_FOLD = re.compile("(\r?\n)+[ \t]")    # as icalendar unfolds content lines


def _unfolded(text: str) -> str:
    """The text as icalendar reads it: folding and CRLF versus LF make no difference."""
    return _FOLD.sub("", text).replace("\r\n", "\n")


def _uid(block: list[str]) -> str | None:
    """The block's one plain UID, or None (none, given twice, with parameters or escapes)."""
    props = _properties(block)
    uid = props.get("UID", "")
    if not uid or "\\" in uid:
        return None
    return uid


def fingerprint(hashes: list[str]) -> str:
    """One value for a set of group hashes, independent of order (XOR of their first 64 bits)."""
    x = 0
    for h in hashes:
        x ^= int(h[:16], 16)
    return f"{len(hashes)}:{x:016x}"
