"""One `welcomeback run` holding many calendars: CPU share and memory (issue 11, item 4).

CALENDARS iCal files of CLIENTS clients each (a weekly session per client, a few weeks of
history and of future), SQLite, the outbox; polled every 2 minutes.  Between polls a
quarter of a second before each interval, CHANGED of the feeds (10 %) get one event moved.  The
service runs on an accelerated clock (`--speed`, default 10: a poll every 12 wall seconds) so
the measurement is short; CPU time is then divided by the virtual time it covered, which is
what one core would spend at the real pace.  The cold first poll of every calendar is left out
(`--warmup` intervals), then CPU (utime + stime of the process) and RSS are read from /proc
over `--intervals` poll intervals.

    .venv/bin/python benchmarks/bench_many.py                          # 1,000 × 25, ~3 min
    .venv/bin/python benchmarks/bench_many.py --calendars 50 --intervals 2 --warmup 1
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
NY = ZoneInfo("America/New_York")
START = datetime(2026, 11, 4, 9, 0, tzinfo=NY)
EVERY = 120.0                      # seconds of virtual time between polls of a calendar

CONFIG = """
[practice]
name = "Bench Hosting"
therapist = "Ana Bench"
therapist_email = "ana@bench.example"
timezone = "America/New_York"
working_hours = "Mon-Fri 09:00-17:00"

[store]
path = "state.db"

[clients]
directory = "clients.csv"

[channels.email]
backend = "outbox"
outbox = "outbox"
from = "ana@bench.example"

[channels.phone]
backend = "therapist-email"
{calendars}
"""


def _ics(c: int, clients: int, shift: int) -> str:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//welcomeback bench//EN"]
    base = datetime(2026, 10, 5, 8, tzinfo=NY)
    for j in range(clients):
        start = base + timedelta(days=j % 5, minutes=20 * (j // 5)) + (timedelta(minutes=shift) if j == 0 else timedelta())
        lines += ["BEGIN:VEVENT", f"UID:c{c}-s{j}", "DTSTAMP:20260101T000000Z",
                  f"DTSTART;TZID=America/New_York:{start:%Y%m%dT%H%M%S}",
                  f"DTEND;TZID=America/New_York:{start + timedelta(minutes=50):%Y%m%dT%H%M%S}",
                  "RRULE:FREQ=WEEKLY;COUNT=12", f"SUMMARY:Cl{c}x{j} Bench", "END:VEVENT"]
    return "\r\n".join([*lines, "END:VCALENDAR", ""])


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calendars", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=25)
    ap.add_argument("--changed", type=float, default=0.10, help="share of feeds changed before each interval")
    ap.add_argument("--speed", type=float, default=10.0)
    ap.add_argument("--warmup", type=int, default=3, help="poll intervals left out (the cold first polls)")
    ap.add_argument("--intervals", type=int, default=5, help="poll intervals measured")
    a = ap.parse_args(argv)
    rng = random.Random(11)
    with tempfile.TemporaryDirectory(prefix="wb-bench-many-") as tmp:
        root = Path(tmp)
        cals = "".join(f'\n[[calendars]]\nname = "c{c:04d}"\nkind = "ics"\nsource = "c{c:04d}.ics"\n'
                       'poll_every = "2 minutes"\n' for c in range(a.calendars))
        (root / "config.toml").write_text(CONFIG.format(calendars=cals))
        (root / "clients.csv").write_text("name,aliases,email,phone,preferred_channel,do_not_contact\n" + "".join(
            f"Cl{c}x{j} Bench,,c{c}x{j}@example.com,,email,false\n"
            for c in range(a.calendars) for j in range(a.clients)))
        shifts = [0] * a.calendars
        for c in range(a.calendars):
            (root / f"c{c:04d}.ics").write_text(_ics(c, a.clients, 0))
        env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1")
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        script = Path(sys.executable).with_name("welcomeback")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]
        log = open(root / "run.log", "wb")
        proc = subprocess.Popen([*cmd, "--config", str(root / "config.toml"), "run", "--now", START.isoformat(),
                                 "--speed", str(a.speed)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        wall_interval = EVERY / a.speed
        try:
            started = time.monotonic()
            while "service ready" not in (root / "run.log").read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() - started > 120:
                    print((root / "run.log").read_text(errors="replace")[-2000:])
                    return 1
                time.sleep(0.1)
            cpu0 = rss_peak = 0.0
            t0 = 0.0
            for n in range(a.warmup + a.intervals):
                if n == a.warmup:
                    cpu0, t0 = _cpu(proc.pid), time.monotonic()
                for c in rng.sample(range(a.calendars), int(a.calendars * a.changed)):
                    shifts[c] = (shifts[c] + 10) % 60
                    (root / f"c{c:04d}.ics").write_text(_ics(c, a.clients, shifts[c]))
                time.sleep(wall_interval)
                if n >= a.warmup:
                    rss_peak = max(rss_peak, _rss_mib(proc.pid))
            cpu = _cpu(proc.pid) - cpu0
            virtual = (time.monotonic() - t0) * a.speed
            lag = _lag(root)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        share = cpu / virtual * 100
        print(f"{a.calendars} calendars × {a.clients} clients, {a.changed:.0%} of feeds changed per 2-minute "
              f"interval, run --speed {a.speed:g}; measured over {a.intervals} intervals after {a.warmup} warm-up")
        print(f"  CPU: {share:.2f} % of one core at the real pace (goal ≤ 5 %: {'met' if share <= 5 else 'NOT met'})")
        print(f"  RSS: {rss_peak:.0f} MiB at most (goal ≤ 200 MB: {'met' if rss_peak <= 200 / 1.048576 else 'NOT met'})")
        print(f"  polls behind: {lag} calendar(s) last polled more than two intervals before the end")
    return 0


def _lag(root: Path) -> int:
    import sqlite3

    with sqlite3.connect(root / "state.db") as db:
        rows = db.execute("SELECT last_poll_at FROM calendars").fetchall()
    stamps = sorted(datetime.fromisoformat(r[0]) for r in rows if r[0])
    if not stamps:
        return len(rows)
    newest = stamps[-1]
    return sum(1 for s in stamps if newest - s > timedelta(seconds=2 * EVERY)) + (len(rows) - len(stamps))


if __name__ == "__main__":
    raise SystemExit(main())
