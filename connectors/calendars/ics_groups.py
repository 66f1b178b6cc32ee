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


@dataclass
class Group:
    blocks: list[str] = field(default_factory=list)    # each VEVENT block's text, in feed order
    hash: str = ""                                      # SHA-256 of the blocks' exact text

    def add(self, block: str) -> None:
        self.blocks.append(block)
        h = hashlib.sha256(self.hash.encode())
        h.update(block.encode("utf-8", "surrogatepass"))
        self.hash = h.hexdigest()


@dataclass
class Feed:
    before: str                      # the calendar up to END:VCALENDAR, its VEVENT blocks taken out
    after: str                       # END:VCALENDAR and what trails it
    frame: str                       # SHA-256 of everything that is not a VEVENT block
    groups: dict[str, Group]         # UID → its blocks

    def text_of(self, uids: list[str]) -> str:
        """A calendar of the frame (properties, time zones) and only these groups' events."""
        return "".join([self.before, *(b for uid in uids for b in self.groups[uid].blocks), self.after])


_CALENDAR = re.compile(r"^(BEGIN|END):VCALENDAR\r?$", re.MULTILINE | re.IGNORECASE)
_EVENT = re.compile(r"^(BEGIN|END):VEVENT\r?$", re.MULTILINE | re.IGNORECASE)
_NESTING = re.compile(r"^(BEGIN|END):", re.MULTILINE | re.IGNORECASE)
_UID = re.compile(r"^UID([;:][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.MULTILINE | re.IGNORECASE)
_FOLD = re.compile(r"\r?\n[ \t]")


def split_feed(text: str) -> Feed | None:
    """``text`` (one VCALENDAR, as ``IcsSource`` prepared it) in parts, or None when unsure."""
    cal = list(_CALENDAR.finditer(text))
    if len(cal) != 2 or cal[0].start() != 0 or cal[0].group(1).upper() != "BEGIN" \
            or cal[1].group(1).upper() != "END":
        return None                           # several calendars: each is read on its own
    end = cal[1].start()
    frame: list[str] = []
    groups: dict[str, Group] = {}
    done, depth, begin = 0, 0, -1
    for m in _EVENT.finditer(text, 0, end):
        if m.group(1).upper() == "BEGIN":
            if begin >= 0:
                return None
            piece = text[done:m.start()]
            if ":" in piece:
                depth += sum(1 if n.group(1).upper() == "BEGIN" else -1 for n in _NESTING.finditer(piece))
            if depth != 1:                    # a VEVENT inside another component: unusual
                return None
            frame.append(piece)
            begin = m.start()
        else:
            if begin < 0:
                return None
            done = m.end() + (text[m.end():m.end() + 1] == "\n")
            block = text[begin:done]
            uid = _uid(block)
            if uid is None:
                return None
            groups.setdefault(uid, Group()).add(block)
            begin = -1
    if begin >= 0:
        return None
    frame.append(text[done:end])
    before = "".join(frame)
    h = hashlib.sha256(before.encode("utf-8", "surrogatepass"))
    h.update(text[end:].encode("utf-8", "surrogatepass"))
    return Feed(before=before, after=text[end:], frame=h.hexdigest(), groups=groups)


def _uid(block: str) -> str | None:
    """The block's one plain UID, or None (none, two, with parameters or escapes, or very long)."""
    found = _UID.findall(block)
    if len(found) != 1 or not found[0].startswith(":"):
        return None
    uid = _FOLD.sub("", found[0][1:]).strip()
    if not uid or "\\" in uid or len(uid) > 400:
        return None
    return uid


def fingerprint(hashes: list[str]) -> str:
    """One value for a set of group hashes, independent of order (XOR of their first 64 bits)."""
    x = 0
    for h in hashes:
        x ^= int(h[:16], 16)
    return f"{len(hashes)}:{x:016x}"
