"""split_feed (connectors.calendars.ics_groups), rewritten to do less per block, gives exactly what
the loop it replaced gave: the same frame, groups, blocks and hashes, or None for the same
feeds.  The earlier loop is kept here as the reference; it is checked against random line soups
(odd case, nesting, folded or repeated UIDs, END:VEVENT with more on its line, LF and CRLF,
text after END:VCALENDAR), against the incremental-poll tests' feeds and against the corpus."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.calendars.ics_groups import Feed, Group, split_feed
from tests.conftest import CORPUS
from tests.test_ics_delta import Feed as DeltaFeed
from tests.test_ics_delta import edit, events

_NESTING = re.compile(r"^(BEGIN|END):", re.MULTILINE | re.IGNORECASE)
_FOLD = re.compile(r"\r?\n[ \t]")
_WORDS = ("begin:vevent", "end:vevent", "vcalendar", "\nuid")


def reference_split(text: str) -> Feed | None:
    """split_feed as it was (commit de50cdc), with Group.add's chained hash."""
    low = text.lower()
    if any(low.count(w) != text.count(w.upper()) for w in _WORDS) or text.count("VCALENDAR") != 2 \
            or not text.startswith("BEGIN:VCALENDAR"):
        return None
    end = text.rfind("\nEND:VCALENDAR") + 1
    if end <= 0:
        return None
    frame: list[str] = []
    groups: dict[str, Group] = {}
    done, depth = 0, 0
    begin = text.find("\nBEGIN:VEVENT", 0, end) + 1
    while begin > 0:
        close = text.find("\nEND:VEVENT", begin, end) + 1
        after = text.find("\nBEGIN:VEVENT", begin, end) + 1
        if close <= 0 or 0 < after < close or not text.startswith(("\r\n", "\n"), begin + 12):
            return None
        stop = text.find("\n", close) + 1
        if stop <= 0 or text[close + 10:stop].rstrip("\r\n"):
            return None
        piece = text[done:begin]
        if ":" in piece:
            depth += sum(1 if n.group(1).upper() == "BEGIN" else -1 for n in _NESTING.finditer(piece))
        if depth != 1:
            return None
        frame.append(piece)
        block = text[begin:stop]
        uid = _reference_uid(block)
        if uid is None:
            return None
        groups.setdefault(uid, Group()).add(block)
        done = stop
        begin = after
    if "VEVENT" in text[done:end]:
        return None
    frame.append(text[done:end])
    before = "".join(frame)
    h = hashlib.sha256(before.encode("utf-8", "surrogatepass"))
    h.update(text[end:].encode("utf-8", "surrogatepass"))
    return Feed(before=before, after=text[end:], frame=h.hexdigest(), groups=groups)


def _reference_uid(block: str) -> str | None:
    at = block.find("\nUID:") + 1
    if at <= 0 or block.find("\nUID", at) >= 0 or block.count("\nUID") != 1:
        return None
    stop = block.find("\n", at)
    while block[stop + 1:stop + 2] in (" ", "\t"):
        stop = block.find("\n", stop + 1)
    uid = _FOLD.sub("", block[at + 4:stop]).strip()
    if not uid or "\\" in uid or len(uid) > 400:
        return None
    return uid


def _same(text: str) -> None:
    want, got = reference_split(text), split_feed(text)
    assert got == want
    if got is not None:      # the frame and the groups still make the calendar, in feed order
        assert got.text_of(list(got.groups)).count("BEGIN:VEVENT") == text.count("BEGIN:VEVENT")


EVENT_LINES = ["UID:b", "UID:c@x.example", "UID: a ", "UID;X-P=1:a", "UID:a\\,b", "UID:", "UIDX:z",
               " continued", "\tcontinued", "SUMMARY:Jane: weekly", "DTSTART:20261101T100000Z",
               "BEGIN:VALARM", "END:VALARM", "uid:a", "X-NOTE:BEGIN:VEVENT", "X-NOTE:vevent", ""]
FRAME_LINES = ["VERSION:2.0", "BEGIN:VTIMEZONE", "END:VTIMEZONE", "TZID:Europe/Berlin", "X-WR-CALNAME:x",
               "BEGIN:VTODO", "END:VTODO", "", " folded", "X-SAYS:VEVENT"]
ENDS = ["END:VEVENT ", "END:VEVENTX", "END:VEVENT\r", "end:vevent", "END:VEVENT\r\r"]
BEGINS = ["BEGIN:VEVENTX", "BEGIN:VEVENT ", "Begin:VEVENT"]


def _rarely(draw: st.DrawFn, usual: list[str], odd: list[str]) -> list[str]:
    """``usual``, or one time in eight, a few lines of ``odd``."""
    return draw(st.lists(st.sampled_from(odd), min_size=1, max_size=2)) if draw(st.integers(0, 7)) == 0 else usual


@st.composite
def soups(draw: st.DrawFn) -> str:
    """A calendar of blocks and frame text, mostly well-formed (so the loop runs), now and then not."""
    lines = _rarely(draw, ["BEGIN:VCALENDAR"], ["", "X:1", "BEGIN:VCALENDAR"])
    for _ in range(draw(st.integers(0, 6))):
        lines += _rarely(draw, [], FRAME_LINES) + _rarely(draw, [], ["BEGIN:VTIMEZONE", "TZID:x", "END:VTIMEZONE"])
        lines += _rarely(draw, ["BEGIN:VEVENT"], BEGINS)
        body = [f"UID:{draw(st.sampled_from('abc'))}", *_rarely(draw, [], ["SUMMARY:x", " folded"])]
        body += _rarely(draw, [], EVENT_LINES)
        lines += draw(st.permutations(body))
        lines += _rarely(draw, ["END:VEVENT"], ENDS)
    lines += _rarely(draw, [], FRAME_LINES)
    lines += _rarely(draw, ["END:VCALENDAR"], ["END:VCALENDARX", "", "END:VCALENDAR\r"])
    newline = draw(st.sampled_from(["\r\n", "\n", "mixed"]))
    if newline == "mixed":
        text = "".join(line + draw(st.sampled_from(["\r\n", "\n"])) for line in lines)
    else:
        text = newline.join(lines) + newline
    return text + _rarely(draw, [""], ["junk after\r\n", "BEGIN:VEVENT\r\n", "\r\n\r\n"])[0]


@settings(max_examples=800, deadline=None)
@given(soups())
def test_random_feeds_split_as_before(text: str) -> None:
    _same(text)


def test_the_soups_reach_the_loop() -> None:
    """The random feeds above are mostly split (not refused at the door), so the loop is exercised."""
    from hypothesis import find

    find(soups(), lambda t: split_feed(t) is not None and len(split_feed(t).groups) >= 2)  # type: ignore[union-attr]
    find(soups(), lambda t: split_feed(t) is None and reference_split(t) is None and "\nUID" in t)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="BEGINVCALDRUT:\r\n \t;=ab\\", max_size=300))
def test_character_soup_splits_as_before(noise: str) -> None:
    _same("BEGIN:VCALENDAR\r\n" + noise + "\r\nEND:VCALENDAR\r\n")
    _same("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:a\r\n" + noise + "\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_a_plain_feed_splits_by_uid() -> None:
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:b\r\n"
            "END:VEVENT\r\nBEGIN:VEVENT\r\nUID:a\r\nRECURRENCE-ID:20261101T100000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    feed = split_feed(text)
    assert feed is not None and feed == reference_split(text)
    assert list(feed.groups) == ["a", "b"] and len(feed.groups["a"].blocks) == 2
    assert feed.before == "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n" and feed.after == "END:VCALENDAR\r\n"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_delta_tests_feeds_split_as_before(data: st.DataObject) -> None:
    feed = DeltaFeed({f"ev-{i}@test": data.draw(events(f"ev-{i}@test")) for i in range(data.draw(st.integers(1, 6)))})
    for n in range(data.draw(st.integers(0, 4))):
        feed = edit(data.draw, feed, n + 1)
    text = feed.text()
    assert split_feed(text) is not None or not feed.events
    _same(text)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not present in this checkout")
def test_the_corpus_splits_as_before() -> None:
    files = sorted(CORPUS.rglob("*.ics"))
    split = 0
    for path in files:
        text = path.read_bytes().decode("utf-8-sig", errors="replace").lstrip()
        _same(text)
        split += split_feed(text) is not None
    assert len(files) > 100 and split > 20      # most of the corpus reaches the loop


def test_generated_exports_split_as_before(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import generate
    import generate_series

    series = generate_series.generate_series(tmp_path / "s", events=600)
    one_offs = generate.generate(tmp_path / "o", events=300)
    for body in (series.generated.ics.read_bytes(), series.one_cancelled(), one_offs.ics.read_bytes()):
        text = body.decode()
        assert split_feed(text) is not None
        _same(text)
