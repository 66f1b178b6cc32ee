"""Bad feeds infer nothing and make ``once`` exit 1: the mass-vanish breaker, empty, truncated and
HTML feeds, HTTP faults.  (The real-world corpus is tests/test_corpus.py.)"""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from connectors.calendars.base import SourceContext, Window
from connectors.calendars.ics import IcsSource
from daemon.clock import FixedClock
from daemon.errors import SourceError
from tests.conftest import local
from tests.ics import Ev, calendar
from tests.stories import team


def ten_sessions() -> list[Ev]:
    names = ["Jane Doe", "Omar Haddad", "Mia Stone"]
    return [Ev(f"e{i}", local(2026, 11, 10 + i, 10), local(2026, 11, 10 + i, 10, 50), names[i % 3])
            for i in range(10)]


def test_feed_that_lost_80_percent_of_future_events_infers_nothing(practice, capsys):
    rosa = Ev("rosa", local(2026, 11, 25, 10), local(2026, 11, 25, 10, 50), "Rosa Lind")
    events = ten_sessions() + [rosa]
    practice.calendar([team(), *events])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), *events[:2]])
    capsys.readouterr()
    assert practice.once(local(2026, 11, 3, 8)) == 1                 # held by the breaker: DEGRADED
    assert "calendar 'main': DEGRADED" in capsys.readouterr().err
    assert practice.status(capsys) == []
    assert practice.cli("status") == 1
    assert "DEGRADED" in capsys.readouterr().out
    # the previous snapshot stands: a later real cancellation of a held event is still seen
    practice.calendar([team(), *events[:-1]])
    assert practice.once(local(2026, 11, 4, 8)) == 0
    assert [s["session_start"][:10] for s in practice.status(capsys)] == ["2026-11-25", "2026-11-25"]


def test_empty_calendar_infers_nothing_and_exits_1(practice, capsys):
    practice.calendar([team(), *ten_sessions()])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    practice.calendar([])
    capsys.readouterr()
    assert practice.once(local(2026, 11, 3, 8)) == 1
    assert "calendar 'main': DEGRADED: the feed came back with no events" in capsys.readouterr().err
    assert practice.status(capsys) == []


def test_a_real_cancellation_in_the_same_poll_is_followed_up(practice, capsys):
    """The positive twin of the cases above: the same feed losing one session is a cancellation."""
    rosa = Ev("rosa", local(2026, 11, 25, 10), local(2026, 11, 25, 10, 50), "Rosa Lind")
    practice.calendar([team(), *ten_sessions(), rosa])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    practice.calendar([team(), *ten_sessions()])
    assert practice.once(local(2026, 11, 3, 8)) == 0
    assert [(s["client"], s["trigger"], s["session_start"][:10]) for s in practice.status(capsys)] == [
        ("Rosa Lind", "cancelled", "2026-11-25"), ("Rosa Lind", "cancelled", "2026-11-25")]


BROKEN = {"empty": "", "html": "<html><body>Please sign in</body></html>",
          "truncated": "BEGIN:VCALENDAR\r\nBEGIN:VEV"}


@pytest.mark.parametrize("body", BROKEN.values(), ids=BROKEN.keys())
def test_broken_file_infers_nothing_and_exits_1(practice, capsys, body):
    practice.calendar([team(), *ten_sessions()])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    (practice.root / "practice.ics").write_text(body)
    capsys.readouterr()
    assert practice.once(local(2026, 11, 3, 8)) == 1
    err = capsys.readouterr().err
    assert "calendar 'main'" in err and "Traceback" not in err
    assert practice.status(capsys) == []


@pytest.mark.parametrize("body", BROKEN.values(), ids=BROKEN.keys())
def test_broken_file_is_named_in_the_error(practice, capsys, body):
    practice.calendar([team(), *ten_sessions()])
    practice.once(local(2026, 11, 2, 8))
    (practice.root / "practice.ics").write_text(body)
    capsys.readouterr()
    practice.once(local(2026, 11, 3, 8))
    assert f"calendar 'main' ({practice.root / 'practice.ics'}): " in capsys.readouterr().err


def test_a_series_edit_is_never_held_back(practice, capsys):
    """Three series shortened at once is the therapist's edit, not a broken feed."""
    series = [Ev(f"w{i}", local(2026, 10, 5 + i, 10), local(2026, 10, 5 + i, 10, 50), name,
                 rrule="FREQ=WEEKLY") for i, name in enumerate(["Jane Doe", "Omar Haddad", "Mia Stone"])]
    practice.calendar(series)
    practice.once(local(2026, 11, 2, 8))
    for s in series:
        s.rrule = "FREQ=WEEKLY;UNTIL=20261104T000000Z"
    practice.calendar(series)
    practice.once(local(2026, 11, 4, 8))
    assert len({s["client"] for s in practice.status(capsys)}) == 3


class _Feed(http.server.BaseHTTPRequestHandler):
    responses: list[tuple[int, dict[str, str], bytes]] = []
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).seen.append(dict(self.headers))
        status, headers, body = type(self).responses.pop(0)
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def feed_server(responses):
    handler = type("H", (_Feed,), {"responses": list(responses), "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/private-0123456789abcdef/basic.ics", handler
    finally:
        server.shutdown()


def _source(url: str) -> IcsSource:
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    return IcsSource("web", url, None, ctx, timeout=2)


WINDOW = Window(datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2027, 2, 1, tzinfo=timezone.utc))


def test_http_feed_conditional_get_and_body_hash():
    body = calendar([team()]).encode()
    with feed_server([(200, {"ETag": '"v1"'}, body), (304, {}, b""), (200, {}, body)]) as (url, h):
        src = _source(url)
        first = src.fetch(WINDOW, {})
        assert first.occurrences and first.state["etag"] == '"v1"'
        assert src.fetch(WINDOW, first.state).occurrences is None          # 304
        assert h.seen[1].get("If-None-Match") == '"v1"'
        assert src.fetch(WINDOW, {"sha256": first.state["sha256"], "window_day": first.state["window_day"]}).occurrences is None


@pytest.mark.parametrize("status", [401, 403, 404, 410, 500])
def test_http_errors_name_the_calendar_and_hide_the_secret_url(status):
    with feed_server([(status, {}, b"no")] * 3) as (url, _):
        with pytest.raises(SourceError) as err:
            _source(url).fetch(WINDOW, {})
    text = str(err.value)
    assert f"HTTP {status}" in text and "web" in text and "0123456789abcdef" not in text


def test_html_login_page_is_not_a_calendar():
    with feed_server([(200, {"Content-Type": "text/html"}, b"<!doctype html><title>Sign in</title>")]) as (url, _):
        with pytest.raises(SourceError, match="not a calendar"):
            _source(url).fetch(WINDOW, {})


def test_a_held_feed_that_stays_the_same_is_accepted_without_inferring(practice, capsys):
    events = ten_sessions()
    practice.calendar([team(), *events])
    practice.once(local(2026, 11, 2, 8))
    practice.calendar([team(), *events[:2]])
    assert practice.once(local(2026, 11, 3, 8)) == 1
    assert practice.once(local(2026, 11, 3, 20)) == 1        # still held: less than 24 h
    capsys.readouterr()
    assert practice.cli("status") == 1
    assert practice.once(local(2026, 11, 4, 9)) == 0         # same feed for 25 h: the new normal
    assert practice.status(capsys) == []
    capsys.readouterr()
    assert practice.cli("status") == 0
    assert "DEGRADED" not in capsys.readouterr().out


def _parse(text: str):
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    return IcsSource("t", "t.ics", None, ctx).parse(text.encode(), WINDOW)[0]


def _vevent(*lines: str) -> str:
    return "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", *lines[:1], "BEGIN:VEVENT", "UID:u1",
                        *lines[1:], "SUMMARY:Jane Doe", "END:VEVENT", "END:VCALENDAR", ""])


def test_windows_zone_names_floating_times_and_x_wr_timezone():
    berlin = _parse(_vevent("", "DTSTART;TZID=W. Europe Standard Time:20261110T090000",
                            "DTEND;TZID=W. Europe Standard Time:20261110T095000"))
    assert berlin[0].start.astimezone(timezone.utc).hour == 8
    floating = _parse(_vevent("", "DTSTART:20261110T090000", "DTEND:20261110T095000"))
    assert floating[0].start.astimezone(timezone.utc).hour == 14        # 09:00 in New York (EST)
    google = _parse(_vevent("X-WR-TIMEZONE:Europe/Berlin", "DTSTART:20261110T080000Z", "DTEND:20261110T085000Z"))
    assert google[0].start.astimezone(timezone.utc).hour == 8
    unknown = _parse(_vevent("", "DTSTART;TZID=Nowhere Standard Time:20261110T090000",
                             "DTEND;TZID=Nowhere Standard Time:20261110T095000"))
    assert unknown[0].start.utcoffset() is not None


def test_all_day_and_recurring_keys():
    occ = _parse(_vevent("", "DTSTART;VALUE=DATE:20261110", "DTEND;VALUE=DATE:20261111"))
    assert occ[0].all_day
    weekly = _parse(_vevent("", "DTSTART;TZID=America/New_York:20261103T100000",
                            "DTEND;TZID=America/New_York:20261103T105000", "RRULE:FREQ=WEEKLY;COUNT=3"))
    assert [o.key for o in weekly] == ["u1@20261103T150000Z", "u1@20261110T150000Z", "u1@20261117T150000Z"]


def test_a_series_whose_rule_became_unexpandable_is_not_cancelled(practice, capsys):
    """An RRULE the recurrence library cannot expand is a damaged event: kept, never a cancellation."""
    weekly = Ev("w1", local(2026, 11, 4, 10), local(2026, 11, 4, 10, 50), "Rosa Lind", rrule="FREQ=WEEKLY")
    practice.calendar([team(), weekly, *ten_sessions()])
    assert practice.once(local(2026, 11, 2, 8)) == 0
    weekly.rrule = "FREQ=WEEKLY;UNTL=20270101T000000Z"          # misspelt UNTIL: the series is skipped
    practice.calendar([team(), weekly, *ten_sessions()])
    practice.once(local(2026, 11, 3, 8))
    assert practice.status(capsys) == []


def test_one_damaged_event_without_uid_keeps_the_readable_ones() -> None:
    body = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
            "BEGIN:VEVENT\r\nSUMMARY:Jane Doe\r\nDTSTART:20261110T150000Z\r\nDTEND:20261110T155000Z\r\nEND:VEVENT\r\n"
            "BEGIN:VEVENT\r\nSUMMARY:broken\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    window = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    occurrences, _, unreadable = IcsSource("main", "x.ics", None, ctx).parse_full(body, window)
    assert [o.summary for o in occurrences] == ["Jane Doe"] and unreadable == {""}


def test_a_truncated_feed_is_an_error_not_an_empty_calendar() -> None:
    ctx = SourceContext(base_dir=Path("."), timezone=ZoneInfo("America/New_York"),
                        clock=FixedClock(local(2026, 11, 2)), secret=lambda n: "", state_dir=Path("."))
    window = Window(datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1, tzinfo=timezone.utc))
    whole = calendar([*ten_sessions()]).encode()
    with pytest.raises(SourceError, match="truncated"):
        IcsSource("main", "x.ics", None, ctx).parse_full(whole[: len(whole) // 2], window)
