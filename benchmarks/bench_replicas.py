"""Replicas sharing one PostgreSQL store: dispatch throughput and polls per calendar per interval
with 1, 2 and 3 `welcomeback run` processes (issue 15, item 5).

For each replica count: a fresh schema in the local PostgreSQL (127.0.0.1:5432, database
`test`), a practice of CALENDARS calendars with PER clients each, every client a no-show on
Tuesday, so CALENDARS × PER emails fall due at once on Wednesday morning; an aiosmtpd sink on
loopback takes them.  The replicas run on one accelerated virtual timeline (`run --now …
--speed 60`: a wall second is a virtual minute; calendars polled every 10 virtual minutes).

Printed per replica count:
  * throughput: steps handed off per wall second, from the replicas being ready to the last
    step sent (the hourly cap is raised out of the way);
  * polls per calendar per interval over a quiet window after that, and per replica — the
    share each replica carries (N replicas should each poll about 1/N of the calendars).

    .venv/bin/python benchmarks/bench_replicas.py                 # 50 calendars × 10, ~4 min
    .venv/bin/python benchmarks/bench_replicas.py --calendars 5 --per 2 --window 20 --replicas 1 2
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from missed import NY, TUESDAY, all_missed, config_text, directory  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"
SPEED = 60.0
INTERVAL_MIN = 10
POLL_LINE = re.compile(r"^\S+ \S+ DEBUG daemon\.engine\.cycle: calendar (room\d+): .* in the window", re.M)

class Sink:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        with self.lock:
            self.ids.append(message_from_bytes(envelope.original_content or envelope.content)["Message-ID"])
        return "250 OK"


def _practice(root: Path, url: str, port: int, calendars: int, per: int) -> Path:
    config = root / "config.toml"
    smtp = f'backend = "smtp"\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"'
    config.write_text(config_text(f'url = "{url}"', email=smtp, poll_every=f"{INTERVAL_MIN} minutes",
                                  calendars={f"room{c:02d}": f"room{c:02d}.ics" for c in range(calendars)}))
    people = [f"Client{i:04d} Bench" for i in range(calendars * per)]
    directory(root / "clients.csv", people)
    all_missed(config, {root / f"room{c:02d}.ics": [(f"r{c}s{j}", TUESDAY + timedelta(minutes=10 * j),
                                                      people[c * per + j]) for j in range(per)]
                        for c in range(calendars)})
    return config


def _states(db: Any) -> Counter[str]:
    import sqlalchemy as sa

    from daemon.store.tables import steps

    with db.connect() as conn:
        return Counter(r[0] for r in conn.execute(sa.select(steps.c.state)))


def _welcomeback() -> list[str]:
    script = Path(sys.executable).with_name("welcomeback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "daemon.cli"]


def one(replicas: int, calendars: int, per: int, window: float) -> dict[str, Any]:
    import psycopg
    import sqlalchemy as sa
    from aiosmtpd.controller import Controller

    schema = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{PG}?options=-csearch_path%3D{schema}"
    sink = Sink()
    class Loopback(Controller):       # port 0: the real port is known only once it listens
        def _trigger_server(self) -> None:
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    controller = Loopback(sink, hostname="127.0.0.1", port=0)
    controller.start()
    port = controller.port
    db = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="wb-bench-replicas-") as tmp:
            root = Path(tmp)
            config = _practice(root, url, port, calendars, per)
            total = calendars * per
            env = dict(os.environ, WELCOMEBACK_NO_KEYRING="1")
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
            v0 = datetime(2026, 11, 4, 9, 30, tzinfo=NY)
            wall0 = time.monotonic()
            logs = [root / f"replica{i}.log" for i in range(replicas)]
            for log in logs:
                now = v0 + timedelta(seconds=(time.monotonic() - wall0) * SPEED)
                with open(log, "wb") as out:
                    procs.append(subprocess.Popen([*_welcomeback(), "--debug", "--config", str(config), "run",
                                                   "--now", now.isoformat(), "--speed", str(SPEED)],
                                                  env=env, stdout=out, stderr=subprocess.STDOUT))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all("service ready" in log.read_text(errors="replace")
                                                          for log in logs):
                time.sleep(0.05)
            ready = time.monotonic()
            deadline = ready + 600
            while time.monotonic() < deadline and _states(db)["sent"] < total:
                time.sleep(0.05)
            sent_in = time.monotonic() - ready
            marks = [len(POLL_LINE.findall(log.read_text(errors="replace"))) for log in logs]
            time.sleep(window)                                   # the quiet window: polls only
            after = [len(POLL_LINE.findall(log.read_text(errors="replace"))) for log in logs]
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(30) for proc in procs]
            intervals = window * SPEED / 60 / INTERVAL_MIN
            per_replica = [(b - a) / intervals for a, b in zip(marks, after)]
            duplicates = sum(n - 1 for n in Counter(sink.ids).values() if n > 1)
            return {"replicas": replicas, "sent": _states(db)["sent"], "total": total, "seconds": sent_in,
                    "throughput": total / sent_in if sent_in else 0.0,
                    "polls_per_calendar": sum(per_replica) / calendars, "per_replica": per_replica,
                    "duplicates": duplicates, "codes": codes}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        controller.stop()
        db.dispose()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--calendars", type=int, default=50)
    parser.add_argument("--per", type=int, default=10, help="clients (and due emails) per calendar")
    parser.add_argument("--window", type=float, default=30.0,
                        help="wall seconds of quiet polling measured after the sends (default 30 = 3 intervals)")
    args = parser.parse_args(argv)
    import logging

    logging.disable(logging.CRITICAL)          # the in-process set-up's own output
    print(f"{args.calendars} calendars × {args.per} clients, {args.calendars * args.per} emails due at once; "
          f"run --speed {SPEED:g}, polls every {INTERVAL_MIN} virtual minutes; {os.cpu_count()} cores")
    print(f"{'replicas':>8}  {'sent':>9}  {'wall s':>7}  {'steps/s':>8}  {'polls/cal/interval':>18}  "
          f"{'per replica (polls/interval)':<30}  duplicates")
    bad = False
    for n in args.replicas:
        r = one(n, args.calendars, args.per, args.window)
        share = " ".join(f"{x:.1f}" for x in r["per_replica"])
        print(f"{n:>8}  {r['sent']:>4}/{r['total']:<4}  {r['seconds']:>7.1f}  {r['throughput']:>8.1f}  "
              f"{r['polls_per_calendar']:>18.2f}  {share:<30}  {r['duplicates']}")
        bad = bad or r["duplicates"] > 0 or r["sent"] != r["total"] or any(r["codes"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
