"""A practice-style export with recurring sessions, for the poll benchmark's ratio table.

Where ``generate.py`` writes one VEVENT per appointment (what practice suites export), this
writes what a therapist's own calendar holds: each client's course of weekly sessions as one
series (``RRULE:FREQ=WEEKLY;COUNT=n``, 12 to 52 weeks, started anywhere in the same 18 months),
with about 6 % of its occurrences overridden (``RECURRENCE-ID`` blocks: moved a day later, or
``STATUS:CANCELLED``), and a few EXDATEs.  ``events`` counts occurrences, not VEVENTs.  Seeded;
the same fictional clients, VTIMEZONE and config as ``generate.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import generate
from generate import NY, REFERENCE, VTIMEZONE, Client


@dataclass
class Series:
    uid: str
    client: int
    start: datetime                 # first occurrence, aware
    count: int
    overrides: dict[int, str]       # occurrence n → "moved" | "cancelled"
    exdates: tuple[int, ...] = ()

    def lines(self, clients: list[Client]) -> list[str]:
        c = clients[self.client]
        name, email = generate.CLINICIANS[c.clinician]
        out = self._block(c, self.start, [f"RRULE:FREQ=WEEKLY;COUNT={self.count}",
                                          *(f"EXDATE;TZID=America/New_York:{_local(self.at(n))}"
                                            for n in self.exdates)], name, email)
        for n, how in sorted(self.overrides.items()):
            rid = f"RECURRENCE-ID;TZID=America/New_York:{_local(self.at(n))}"
            if how == "moved":
                out += self._block(c, self.at(n) + timedelta(days=1), [rid], name, email)
            else:
                out += self._block(c, self.at(n), [rid, "STATUS:CANCELLED"], name, email)
        return out

    def at(self, n: int) -> datetime:
        return self.start + timedelta(weeks=n)

    def _block(self, c: Client, start: datetime, extra: list[str], clin: str, clin_email: str) -> list[str]:
        stamp = (self.start - timedelta(days=7)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = ["BEGIN:VEVENT", f"UID:{self.uid}", f"DTSTAMP:{stamp}", f"LAST-MODIFIED:{stamp}",
               f"DTSTART;TZID=America/New_York:{_local(start)}",
               f"DTEND;TZID=America/New_York:{_local(start + timedelta(minutes=50))}",
               f"SUMMARY:{c.name}", f"ORGANIZER;CN={clin}:mailto:{clin_email}", *extra]
        if c.email:
            out.append(f"ATTENDEE;CN={c.name};PARTSTAT=ACCEPTED:mailto:{c.email}")
        return out + ["END:VEVENT"]


def _local(moment: datetime) -> str:
    return moment.astimezone(NY).strftime("%Y%m%dT%H%M%S")


@dataclass
class SeriesExport:
    generated: generate.Generated
    series: list[Series]

    def render(self, series: list[Series] | None = None) -> bytes:
        lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Therapist calendar (fictional)//EN",
                 "X-WR-CALNAME:Sessions", "X-WR-TIMEZONE:America/New_York", *VTIMEZONE]
        for s in series if series is not None else self.series:
            lines += s.lines(self.generated.clients)
        lines.append("END:VCALENDAR")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")

    def one_cancelled(self, picks: tuple[int, ...] = (0,)) -> bytes:
        """The export with one upcoming occurrence (a few days after "now") cancelled by an
        override, in the first series that has one; ``picks``: in each of those series instead
        (0 the first such series, 1 the next …)."""
        ref = self.generated.reference
        changed, found = list(self.series), 0
        for i, s in enumerate(self.series):
            for n in range(s.count):
                if ref + timedelta(days=2) <= s.at(n) <= ref + timedelta(days=30) and n not in s.overrides:
                    if found in picks:
                        changed[i] = Series(s.uid, s.client, s.start, s.count, {**s.overrides, n: "cancelled"},
                                            s.exdates)
                    found += 1
                    break
            if found > max(picks):
                return self.render(changed)
        raise SystemExit("no upcoming occurrence to cancel")


def generate_series(folder: Path, events: int = generate.DEFAULT_EVENTS, seed: int = generate.DEFAULT_SEED,
                    clients: int = generate.DEFAULT_CLIENTS) -> SeriesExport:
    """Write practice.ics (series), clients.csv and config.toml into ``folder``."""
    rng = random.Random(seed + 1)
    folder.mkdir(parents=True, exist_ok=True)
    people = generate.make_clients(clients, rng)
    first = REFERENCE.date() - timedelta(days=generate.DAYS_BEFORE)
    span = generate.DAYS_BEFORE + generate.DAYS_AFTER
    series: list[Series] = []
    total = 0
    while total < events:
        who = len(series) % len(people)
        c = people[who]
        count = min(rng.randint(12, 52), events - total)
        latest = max(0, span - 7 * count)
        day = first + timedelta(days=rng.randint(0, latest))
        day += timedelta(days=(c.weekday - day.weekday()) % 7)
        start = datetime(day.year, day.month, day.day, c.hour, tzinfo=NY)
        overrides = {n: rng.choice(["moved", "cancelled"]) for n in range(count) if rng.random() < 0.06}
        exdates = tuple(n for n in range(count) if n not in overrides and rng.random() < 0.01)
        series.append(Series(f"course-{len(series):05d}-{rng.getrandbits(32):08x}@therapist.example",
                             who, start, count, overrides, exdates))
        total += count
    ics = folder / "practice.ics"
    gen = generate.Generated(folder, ics, generate.write_config(folder, "practice.ics"), people, [], REFERENCE)
    export = SeriesExport(gen, series)
    ics.write_bytes(export.render())
    (folder / "clients.csv").write_text(generate.clients_csv(people), encoding="utf-8")
    return export
