"""The practice the dispatch and replica benchmarks share: clients who all missed Tuesday's
session, so their follow-up emails fall due together on Wednesday (fictional people only)."""

from __future__ import annotations

import contextlib
import io
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
TUESDAY = datetime(2026, 11, 3, 8, tzinfo=NY)

CONFIG = """
[practice]
name = "Bench Counselling"
therapist = "Ana Bench"
therapist_email = "ana@bench.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[store]
{store}

[clients]
directory = "clients.csv"

[cadence]
steps = [{{ channel = "email", after = "1 business day", template = "email_followup" }}]
max_messages_per_hour = 100000

[channels.email]
{email}
from = "ana@bench.example"

[channels.phone]
backend = "therapist-email"
{calendars}
"""
OUTBOX = 'backend = "outbox"\noutbox = "outbox"'


def config_text(store: str, *, email: str = OUTBOX, calendars: dict[str, str] | None = None,
                poll_every: str = "2 minutes") -> str:
    """A config: ``calendars`` maps a calendar's name to its file (default: main → practice.ics)."""
    tables = "".join(f'\n[[calendars]]\nname = "{name}"\nkind = "ics"\nsource = "{file}"\npoll_every = "{poll_every}"\n'
                     for name, file in (calendars or {"main": "practice.ics"}).items())
    return CONFIG.format(store=store, email=email, calendars=tables)


def ics(events: list[tuple[str, datetime, str]], *, minutes: int = 8, rrule: str = "") -> str:
    """A calendar of (UID, start, title) events, ``minutes`` long, each with ``rrule`` if given."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback bench//EN"]
    for uid, start, summary in events:
        lines += ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z",
                  f"DTSTART;TZID=America/New_York:{start:%Y%m%dT%H%M%S}",
                  f"DTEND;TZID=America/New_York:{start + timedelta(minutes=minutes):%Y%m%dT%H%M%S}",
                  *([f"RRULE:{rrule}"] if rrule else []), f"SUMMARY:{summary}", "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


def directory(path: Path, people: list[str]) -> None:
    """A client directory of ``people`` (every one reachable by email only)."""
    path.write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
        f"{n},,c{i}@example.com,,email,false\n" for i, n in enumerate(people)))


def all_missed(config: Path, feeds: dict[Path, list[tuple[str, datetime, str]]]) -> None:
    """Write the feeds, read them on Monday, mark every session a no-show, read them on Tuesday
    evening: one follow-up per client, its email due on Wednesday."""
    from daemon.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        for path, events in feeds.items():
            path.write_text(ics(events))
        assert main(["--config", str(config), "once", "--now", "2026-11-02T08:00:00-05:00"]) == 0
        for path, events in feeds.items():
            path.write_text(ics([(uid, start, title + " no-show") for uid, start, title in events]))
        assert main(["--config", str(config), "once", "--now", "2026-11-03T20:00:00-05:00"]) == 0
