"""A practice's week for the rule scenarios: sessions, a second calendar, what landed where.

Every story is driven through ``welcomeback once --now`` over changing ICS files and reads
back ``status --json`` and the outbox.  Fictional people only (the log canary's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.conftest import Practice, local
from tests.ics import Ev, write
from tests.stories import team

THERAPIST = "ana@riverside.example"
JANE = "jane.doe@example.com"
OMAR = "omar.h@example.org"
HEADER = "name,aliases,email,phone,preferred_channel,do_not_contact\n"

__all__ = ["HEADER", "JANE", "OMAR", "THERAPIST", "add_calendar", "attention", "call_tasks", "configure",
           "directory", "emails_to", "journal", "local", "on", "session", "team", "weekly"]


def session(uid: str, day: int, hour: int = 10, who: str = "Jane Doe", *, month: int = 11, **kw: Any) -> Ev:
    """A 50-minute one-off session in November 2026 (practice time)."""
    return Ev(uid, local(2026, month, day, hour), local(2026, month, day, hour, 50), who, **kw)


def weekly(uid: str, day: int, hour: int, who: str, *, month: int = 10, rule: str = "FREQ=WEEKLY",
           **kw: Any) -> Ev:
    """A recurring session whose first occurrence is ``day``/``month`` 2026."""
    return Ev(uid, local(2026, month, day, hour), local(2026, month, day, hour, 50), who, rrule=rule, **kw)


def on(series: Ev, day: int, month: int = 11, **changes: Any) -> Ev:
    """An override of one occurrence of ``series`` (RECURRENCE-ID = its original start)."""
    original = series.start.replace(month=month, day=day)
    start = changes.pop("start", original)
    length = series.end - series.start
    return Ev(series.uid, start, start + length, changes.pop("summary", series.summary),
              recurrence_id=original, attendees=list(series.attendees), **changes)


def add_calendar(practice: Practice, name: str) -> None:
    """A second ICS calendar ``NAME.ics`` next to the config (empty until written)."""
    text = practice.config.read_text().replace(
        "[clients]", f'[[calendars]]\nname = "{name}"\nkind = "ics"\nsource = "{name}.ics"\n\n[clients]', 1)
    practice.config.write_text(text)
    put(practice, name, [])


def put(practice: Practice, calendar: str, events: list[Ev]) -> None:
    write(practice.root / f"{calendar}.ics", events)


def configure(practice: Practice, toml: str) -> None:
    """Add config tables (e.g. ``[detection]``) before the channels."""
    practice.config.write_text(practice.config.read_text().replace("[channels.email]", toml + "\n\n[channels.email]", 1))


def directory(practice: Practice, rows: str, name: str = "clients.csv") -> None:
    """Replace the client directory (CSV with the header, or a vCard file)."""
    (practice.root / name).write_text(rows if name.endswith(".vcf") else HEADER + rows)
    if name != "clients.csv":
        practice.config.write_text(practice.config.read_text().replace('"clients.csv"', f'"{name}"'))


def journal(practice: Practice, capsys: Any, now: datetime | None = None) -> list[tuple[Any, ...]]:
    """(client, session day, trigger, step, channel, state, reason) of every step."""
    return [(s["client"], s["session_start"][:10], s["trigger"], s["step"], s["channel"], s["state"], s["reason"])
            for s in practice.status(capsys, now)]


def call_tasks(practice: Practice) -> list[str]:
    return [m for m in practice.mails_to(THERAPIST) if "Subject: Call " in m]


def emails_to(practice: Practice, address: str) -> list[str]:
    return practice.mails_to(address)


def attention(practice: Practice, capsys: Any) -> str:
    """The status table's "Needs your attention" part."""
    capsys.readouterr()
    practice.cli("status")
    out = capsys.readouterr().out
    return out.split("Needs your attention:", 1)[1] if "Needs your attention:" in out else ""
