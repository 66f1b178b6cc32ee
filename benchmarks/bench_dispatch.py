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
import logging
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from missed import TUESDAY, all_missed, config_text, directory  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


def one(root: Path, store: str, steps: int) -> tuple[float, int]:
    """Seconds of one dispatch of ``steps`` due emails, and how many were sent."""
    from daemon.clock import FixedClock
    from daemon.config import load
    from daemon.engine.cycle import Engine

    config = root / "config.toml"
    config.write_text(config_text(store))
    people = [f"Client{i:04d} Bench" for i in range(steps)]
    directory(root / "clients.csv", people)
    all_missed(config, {root / "practice.ics": [(f"s{i}", TUESDAY + timedelta(minutes=2 * i), n)
                                                for i, n in enumerate(people)]})
    engine = Engine(load(config), FixedClock(TUESDAY + timedelta(days=2, hours=4)))
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
