"""Per-step dispatch cost on SQLite and PostgreSQL (issue 11, item 3; goal ≤ 2 ms a step).

A practice whose STEPS clients all missed Tuesday's session: their emails are all due on
Wednesday.  One `dispatch()` of the real engine (re-check, build, claim, hand-off to the outbox
folder, record) is timed in process, median of --runs fresh stores; the per-step figure is that
time over the steps sent.  The outbox write (one .eml file each, fsynced) is part of it.

    .venv/bin/python benchmarks/bench_dispatch.py                 # 300 steps, 3 runs, both stores
    .venv/bin/python benchmarks/bench_dispatch.py --steps 50 --runs 1 --stores sqlite
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = "postgresql://postgres@127.0.0.1:5432/test"
NY = ZoneInfo("America/New_York")
CONFIG = """
[practice]
name = "Bench Counselling"
therapist = "Ana Bench"
therapist_email = "ana@bench.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[store]
{store}

[[calendars]]
name = "main"
kind = "ics"
source = "practice.ics"

[clients]
directory = "clients.csv"

[cadence]
steps = [{{ channel = "email", after = "1 business day", template = "email_followup" }}]
max_messages_per_hour = 100000

[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@bench.example"

[channels.phone]
backend = "therapist-email"
"""


def _ics(events: list[tuple[str, datetime, str]]) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback bench//EN"]
    for uid, start, summary in events:
        lines += ["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20260101T000000Z",
                  f"DTSTART;TZID=America/New_York:{start:%Y%m%dT%H%M%S}",
                  f"DTEND;TZID=America/New_York:{start + timedelta(minutes=1):%Y%m%dT%H%M%S}",
                  f"SUMMARY:{summary}", "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


def one(root: Path, store: str, steps: int) -> tuple[float, int]:
    """Seconds of one dispatch of ``steps`` due emails, and how many were sent."""
    from daemon.cli import main
    from daemon.clock import FixedClock
    from daemon.config import load
    from daemon.engine.cycle import Engine

    config = root / "config.toml"
    config.write_text(CONFIG.format(store=store))
    people = [f"Client{i:04d} Bench" for i in range(steps)]
    (root / "clients.csv").write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
        f"{n},,c{i}@example.com,,email,false\n" for i, n in enumerate(people)))
    tuesday = datetime(2026, 11, 3, 8, tzinfo=NY)
    events = [(f"s{i}", tuesday + timedelta(minutes=2 * i), n) for i, n in enumerate(people)]
    (root / "practice.ics").write_text(_ics(events))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["--config", str(config), "once", "--now", "2026-11-02T08:00:00-05:00"]) == 0
        (root / "practice.ics").write_text(_ics([(u, s, t + " no-show") for u, s, t in events]))
        assert main(["--config", str(config), "once", "--now", "2026-11-03T20:00:00-05:00"]) == 0
    engine = Engine(load(config), FixedClock(datetime(2026, 11, 5, 12, tzinfo=NY)))
    try:
        started = time.perf_counter()
        counts = engine.dispatch()
        return time.perf_counter() - started, counts.get("sent", 0)
    finally:
        engine.close()


def _pg_store() -> tuple[str, str]:
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return schema, f'url = "{PG}?options=-csearch_path%3D{schema}"'


def _drop(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stores", nargs="+", default=["sqlite", "postgres"], choices=["sqlite", "postgres"])
    a = ap.parse_args(argv)
    logging.disable(logging.CRITICAL)
    print(f"dispatch of {a.steps} due emails to the outbox, median of {a.runs} fresh store(s)")
    for kind in a.stores:
        times: list[float] = []
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory(prefix="wb-bench-dispatch-") as tmp:
                schema = ""
                store = 'path = "state.db"'
                if kind == "postgres":
                    schema, store = _pg_store()
                try:
                    seconds, sent = one(Path(tmp), store, a.steps)
                finally:
                    if schema:
                        _drop(schema)
                if sent != a.steps:
                    print(f"{kind}: only {sent} of {a.steps} sent")
                    return 1
                times.append(seconds)
        per = statistics.median(times) / a.steps * 1000
        print(f"{kind:>9}: {per:6.2f} ms a step (goal ≤ 2 ms: {'met' if per <= 2 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
