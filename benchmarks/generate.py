"""Generate a fictional practice-management export for the poll benchmark.

One VEVENT per appointment (no RRULE), the way practice suites export their
schedule: UID, DTSTART/DTEND with ``TZID=America/New_York`` and a VTIMEZONE,
the client's name in SUMMARY, ATTENDEE lines on some appointments, a few
``STATUS:CANCELLED`` and a few "no-show" markers.  Appointments are spread
over about 18 months around a fixed reference date (12 months before it,
6 months after), so the engine's window (30 days back, 120 ahead) holds
roughly a quarter of them.  Everything is seeded: the same arguments give
byte-identical files.

Also writes the matching ``clients.csv`` and a ``config.toml`` (SQLite store,
outbox channel).  All people, addresses and numbers are invented
(555-01xx numbers, example.* domains).

Usage: ``python benchmarks/generate.py OUTDIR [--events 5000] [--clients 150] [--seed N]``
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
#: "now" for the benchmark: a Monday noon in the practice's zone.
REFERENCE = datetime(2026, 3, 2, 12, 0, tzinfo=NY)
DAYS_BEFORE = 365
DAYS_AFTER = 183
DEFAULT_EVENTS = 5000
DEFAULT_CLIENTS = 150
DEFAULT_SEED = 20260302

FIRST = ["Avery", "Blake", "Camila", "Dario", "Elena", "Farah", "Gideon", "Hana", "Ivo", "Juno",
         "Kenji", "Leona", "Marek", "Nadia", "Otis", "Priya", "Quinn", "Rafael", "Saoirse", "Tobias",
         "Ulla", "Viktor", "Wren", "Ximena", "Yusuf", "Zara", "Bodhi", "Clio", "Dmitri", "Esme"]
LAST = ["Abernathy", "Brightwater", "Castellano", "Dunmore", "Eklund", "Fairweather", "Galloway",
        "Holloway", "Ingersoll", "Jablonski", "Kowalczyk", "Lindqvist", "Marchetti", "Nakagawa",
        "Oyelaran", "Pemberton", "Quintero", "Rasmussen", "Szabo", "Thornbury", "Umberfield",
        "Vasquez-Lowe", "Whitcombe", "Yamashita", "Zielinski"]
NICK = {"Gideon": "Gid", "Saoirse": "Sersha", "Tobias": "Toby", "Dmitri": "Dima", "Rafael": "Rafa"}
CLINICIANS = [("Ana Ruiz", "ana@riverside.example"), ("Ben Okoro", "ben@riverside.example"),
              ("Cleo Marsh", "cleo@riverside.example")]
DOMAINS = ["example.com", "example.org", "example.net"]
SUMMARY_FORMS = ["{name}", "Appointment: {name}", "{name} (video)", "{name} - follow-up"]
HOURS = [9, 10, 11, 13, 14, 15, 16]

VTIMEZONE = [
    "BEGIN:VTIMEZONE",
    "TZID:America/New_York",
    "X-LIC-LOCATION:America/New_York",
    "BEGIN:DAYLIGHT",
    "TZOFFSETFROM:-0500",
    "TZOFFSETTO:-0400",
    "TZNAME:EDT",
    "DTSTART:19700308T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU",
    "END:DAYLIGHT",
    "BEGIN:STANDARD",
    "TZOFFSETFROM:-0400",
    "TZOFFSETTO:-0500",
    "TZNAME:EST",
    "DTSTART:19701101T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU",
    "END:STANDARD",
    "END:VTIMEZONE",
]

CONFIG = """[practice]
name = "Riverside Counselling (benchmark)"
therapist = "Ana Ruiz"
therapist_email = "ana@riverside.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[store]
path = "state.db"

[[calendars]]
name = "main"
kind = "ics"
source = "{source}"

[clients]
directory = "clients.csv"

[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@riverside.example"

[channels.phone]
backend = "therapist-email"
"""


@dataclass(frozen=True)
class Client:
    """A fictional client of the directory."""

    name: str
    alias: str
    email: str
    phone: str
    preferred_channel: str
    do_not_contact: bool
    weekday: int          # home slot: 0 = Monday
    hour: int
    clinician: int


@dataclass(frozen=True)
class Appointment:
    """One exported appointment (one VEVENT)."""

    uid: str
    start: datetime       # aware, America/New_York
    minutes: int
    client: int           # index into the client list
    summary: str
    status: str = ""      # "" (confirmed) or "CANCELLED"
    no_show: bool = False
    attendee: bool = False
    created: datetime = REFERENCE

    def lines(self, clients: list[Client]) -> list[str]:
        """The VEVENT's content lines (short enough to need no folding)."""
        c = clients[self.client]
        clin_name, clin_email = CLINICIANS[c.clinician]
        end = self.start + timedelta(minutes=self.minutes)
        stamp = self.created.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = ["BEGIN:VEVENT", f"UID:{self.uid}", f"DTSTAMP:{stamp}", f"CREATED:{stamp}",
               f"LAST-MODIFIED:{stamp}",
               f"DTSTART;TZID=America/New_York:{self.start.strftime('%Y%m%dT%H%M%S')}",
               f"DTEND;TZID=America/New_York:{end.strftime('%Y%m%dT%H%M%S')}",
               f"SUMMARY:{self.summary}", f"LOCATION:Room {c.clinician + 1}",
               f"ORGANIZER;CN={clin_name}:mailto:{clin_email}"]
        if self.no_show:
            out.append("DESCRIPTION:no-show\\, no call")
            out.append("CATEGORIES:No-show")
        if self.status:
            out.append(f"STATUS:{self.status}")
        else:
            out.append("STATUS:CONFIRMED")
        if self.attendee and c.email:
            out.append(f"ATTENDEE;CN={c.name};ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED:mailto:{c.email}")
        out += ["TRANSP:OPAQUE", "END:VEVENT"]
        return out


def make_clients(count: int, rng: random.Random) -> list[Client]:
    """``count`` distinct fictional clients with a home slot each."""
    pairs = [(f, last) for f in FIRST for last in LAST]
    rng.shuffle(pairs)
    if count > len(pairs):
        raise ValueError(f"at most {len(pairs)} clients")
    out = []
    for i, (first, last) in enumerate(pairs[:count]):
        name = f"{first} {last}"
        alias = f"{NICK[first]} {last}" if first in NICK else ""
        email = "" if rng.random() < 0.08 else \
            f"{first.lower()}.{last.lower().replace('-', '')}@{DOMAINS[i % len(DOMAINS)]}"
        phone = f"+1 555 01{i % 10} {1000 + i:04d}"
        channel = rng.choice(["", "", "phone", "email"])
        out.append(Client(name, alias, email, phone, channel, rng.random() < 0.03,
                          weekday=rng.randrange(5), hour=rng.choice(HOURS), clinician=rng.randrange(3)))
    return out


def make_appointments(clients: list[Client], count: int, rng: random.Random,
                      reference: datetime = REFERENCE) -> list[Appointment]:
    """``count`` appointments evenly spread over the 18 months, in time order."""
    first_day = reference.date() - timedelta(days=DAYS_BEFORE)
    span = DAYS_BEFORE + DAYS_AFTER
    by_weekday = {d: [i for i, c in enumerate(clients) if c.weekday == d] for d in range(5)}
    out: list[Appointment] = []
    for n in range(count):
        day = first_day + timedelta(days=int(n * span / count))
        while day.weekday() > 4:                       # weekend -> next Monday
            day += timedelta(days=1)
        who = rng.choice(by_weekday[day.weekday()] or list(range(len(clients))))
        c = clients[who]
        hour = c.hour if rng.random() < 0.85 else rng.choice(HOURS)
        start = datetime(day.year, day.month, day.day, hour, 0, tzinfo=NY)
        past = start < reference
        roll = rng.random()
        status = "CANCELLED" if roll < 0.02 else ""
        no_show = past and not status and 0.02 <= roll < 0.035
        summary = rng.choice(SUMMARY_FORMS).format(name=c.alias if c.alias and rng.random() < 0.2 else c.name)
        if no_show and rng.random() < 0.5:
            summary = f"No-show: {summary}"
        out.append(Appointment(
            uid=f"appt-{n:06d}-{rng.getrandbits(32):08x}@pm-suite.example", start=start,
            minutes=rng.choice([50, 50, 50, 53, 60]), client=who, summary=summary, status=status,
            no_show=no_show, attendee=rng.random() < 0.4,
            created=datetime.combine(day - timedelta(days=rng.randrange(3, 60)), datetime.min.time(),
                                     tzinfo=UTC)))
    return out


def render(appointments: list[Appointment], clients: list[Client]) -> bytes:
    """The whole export as iCalendar bytes (CRLF line ends)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//PM Suite (fictional)//Export 4.2//EN",
             "CALSCALE:GREGORIAN", "METHOD:PUBLISH", "X-WR-CALNAME:Riverside Counselling",
             "X-WR-TIMEZONE:America/New_York", *VTIMEZONE]
    for a in appointments:
        lines += a.lines(clients)
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def clients_csv(clients: list[Client]) -> str:
    """The directory in welcomeback's CSV form."""
    rows = ["name,aliases,email,phone,preferred_channel,do_not_contact"]
    for c in clients:
        rows.append(f"{c.name},{c.alias},{c.email},{c.phone},{c.preferred_channel},"
                    f"{'true' if c.do_not_contact else 'false'}")
    return "\n".join(rows) + "\n"


@dataclass
class Generated:
    """What ``generate`` wrote, plus the objects to derive a changed export from."""

    folder: Path
    ics: Path
    config: Path
    clients: list[Client]
    appointments: list[Appointment]
    reference: datetime

    def changed(self, index: int, **changes: object) -> bytes:
        """The export with appointment ``index`` altered (e.g. ``status="CANCELLED"``)."""
        appts = list(self.appointments)
        appts[index] = replace(appts[index], **changes)  # type: ignore[arg-type]
        return render(appts, self.clients)


def generate(folder: Path, events: int = DEFAULT_EVENTS, clients: int = DEFAULT_CLIENTS,
             seed: int = DEFAULT_SEED, source: str = "practice.ics") -> Generated:
    """Write practice.ics, clients.csv and config.toml into ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    people = make_clients(clients, rng)
    appts = make_appointments(people, events, rng)
    ics = folder / "practice.ics"
    ics.write_bytes(render(appts, people))
    (folder / "clients.csv").write_text(clients_csv(people), encoding="utf-8")
    config = write_config(folder, source)
    return Generated(folder, ics, config, people, appts, REFERENCE)


def write_config(folder: Path, source: str, name: str = "config.toml") -> Path:
    """A config for ``source`` (path or URL) with the store in ``folder``; mode 0600."""
    config = folder / name
    config.write_text(CONFIG.format(source=source), encoding="utf-8")
    config.chmod(0o600)
    return config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    p.add_argument("--clients", type=int, default=DEFAULT_CLIENTS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    a = p.parse_args(argv)
    g = generate(a.folder, a.events, a.clients, a.seed)
    size = g.ics.stat().st_size
    print(f"wrote {g.ics} ({len(g.appointments)} events, {size / 1e6:.2f} MB), "
          f"{g.folder / 'clients.csv'} ({len(g.clients)} clients), {g.config}")
    print(f"reference instant (use as --now): {g.reference.isoformat()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
