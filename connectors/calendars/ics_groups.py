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


_NESTING = re.compile(r"^(BEGIN|END):", re.MULTILINE | re.IGNORECASE)
_FOLD = re.compile(r"\r?\n[ \t]")
_WORDS = ("begin:vevent", "end:vevent", "vcalendar", "\nuid")


def split_feed(text: str) -> Feed | None:
    """``text`` (one VCALENDAR, as ``IcsSource`` prepared it) in parts, or None when unsure.

    Plain string searches, for speed: the words it looks for must be in upper case (as every
    calendar program writes them), or the whole feed is left to icalendar.  Every poll of a
    changed feed splits all of it, so the loop does little per block: the text up to
    END:VCALENDAR is cut at each line that begins a VEVENT, and each cut holds one block (up to
    its END:VEVENT line) and the frame's text before the next."""
    if not text.startswith("BEGIN:VCALENDAR"):
        return None
    found = [text.count(w.upper()) for w in _WORDS]
    if found[_WORDS.index("vcalendar")] != 2:
        return None                           # several calendars: each is read on its own
    low = text.lower()
    if any(low.count(w) != n for w, n in zip(_WORDS, found)):
        return None                           # the words in another case: icalendar decides
    end = text.rfind("\nEND:VCALENDAR") + 1
    if end <= 0:
        return None
    cuts = text[:end].split("\nBEGIN:VEVENT")
    frame = [cuts[0] + "\n"] if len(cuts) > 1 else [cuts[0]]
    blocks: dict[str, list[str]] = {}
    depth = _depth(frame[0])
    last = len(cuts) - 1
    for n in range(1, last + 1):
        cut = cuts[n]
        close = cut.find("\nEND:VEVENT") + 1
        if close <= 0 or depth != 1 or cut[:1] != "\n" and cut[:2] != "\r\n":
            return None                       # no END before the next BEGIN, nested, BEGIN:VEVENTX
        stop = cut.find("\n", close) + 1     # past the END:VEVENT line (0: the cut's own end)
        if cut[close + 10:stop or len(cut)].rstrip("\r\n"):
            return None                       # END:VEVENT with more on its line
        if stop:       # the frame's text up to the next block, with the newline the cut took
            block, between = "BEGIN:VEVENT" + cut[:stop], cut[stop:] + ("\n" if n < last else "")
        else:          # the END:VEVENT line ends with the newline before the next block
            block, between = "BEGIN:VEVENT" + cut + "\n", ""
        uid = _uid(block)
        if uid is None:
            return None
        blocks.setdefault(uid, []).append(block)
        depth += _depth(between)
        frame.append(between)
    if "VEVENT" in frame[-1]:
        return None
    before = "".join(frame)
    h = hashlib.sha256(before.encode("utf-8", "surrogatepass"))
    h.update(text[end:].encode("utf-8", "surrogatepass"))
    return Feed(before=before, after=text[end:], frame=h.hexdigest(),
                groups={uid: Group(parts, _chained(parts)) for uid, parts in blocks.items()})


def _depth(piece: str) -> int:
    """BEGIN lines minus END lines in ``piece``."""
    return sum(1 if m.group(1).upper() == "BEGIN" else -1 for m in _NESTING.finditer(piece)) if ":" in piece else 0


def _chained(blocks: list[str]) -> str:
    """:meth:`Group.add`'s hash of ``blocks``, added in order."""
    digest = ""
    for block in blocks:
        h = hashlib.sha256(digest.encode())
        h.update(block.encode("utf-8", "surrogatepass"))
        digest = h.hexdigest()
    return digest


def _uid(block: str) -> str | None:
    """The block's one plain UID (None: none or two, with parameters or escapes, very long)."""
    at = block.find("\nUID:") + 1
    if at <= 0 or block.count("\nUID") != 1:
        return None
    stop = block.find("\n", at)
    if block[stop + 1:stop + 2] in (" ", "\t"):
        while block[stop + 1:stop + 2] in (" ", "\t"):
            stop = block.find("\n", stop + 1)
        uid = _FOLD.sub("", block[at + 4:stop]).strip()
    else:
        uid = block[at + 4:stop].strip()      # one line: nothing to unfold
    if not uid or "\\" in uid or len(uid) > 400:
        return None
    return uid


def fingerprint(hashes: list[str]) -> str:
    """One value for a set of group hashes, independent of order (XOR of their first 64 bits)."""
    x = 0
    for h in hashes:
        x ^= int(h[:16], 16)
    return f"{len(hashes)}:{x:016x}"
