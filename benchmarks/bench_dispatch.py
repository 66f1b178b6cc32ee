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
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from missed import TUESDAY, all_missed, config_text, directory  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Run:
    wall: float = 0.0              # seconds of the whole dispatch
    cpu: float = 0.0               # this process's CPU seconds during it
    sent: int = 0
    statements: int = 0            # SQL statements sent to the store (BEGIN/COMMIT/SET/PRAGMA not counted)
    parts: dict[str, float] = field(default_factory=dict)   # wall seconds inside the wrapped calls


def one(root: Path, store: str, steps: int) -> Run:
    """One dispatch of ``steps`` due emails, timed, with its split."""
    import sqlalchemy as sa

    from connectors.channels import outbox
    from daemon.clock import FixedClock
    from daemon.config import load
    from daemon.engine import dispatch, messages
    from daemon.engine.cycle import Engine

    config = root / "config.toml"
    config.write_text(config_text(store))
    people = [f"Client{i:04d} Bench" for i in range(steps)]
    directory(root / "clients.csv", people)
    all_missed(config, {root / "practice.ics": [(f"s{i}", TUESDAY + timedelta(minutes=2 * i), n)
                                                for i, n in enumerate(people)]})
    engine = Engine(load(config), FixedClock(TUESDAY + timedelta(days=2, hours=4)))
    run = Run()
    sql = {"n": 0}

    def count(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "SET ", "PRAGMA")):
            sql["n"] += 1

    sa.event.listen(engine.store.engine, "before_cursor_execute", count)
    wrapped = [(messages, "build", "render templates (messages.build)"),
               (outbox, "email_bytes", "MIME message (email_bytes)"),
               (outbox.OutboxChannel, "_write", "outbox file write + fsync"),
               (dispatch.Dispatcher, "_record", "record transaction (after the hand-off)")]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in wrapped]
    for (owner, name, label), (_, _, original) in zip(wrapped, originals):
        setattr(owner, name, _timed(original, label, run.parts))
    try:
        cpu, started = time.process_time(), time.perf_counter()
        counts = engine.dispatch()
        run.wall, run.cpu = time.perf_counter() - started, time.process_time() - cpu
        run.sent, run.statements = counts.get("sent", 0), sql["n"]
        return run
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)
        engine.close()


def _timed(fn: Callable[..., Any], label: str, parts: dict[str, float]) -> Callable[..., Any]:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[label] = parts.get(label, 0.0) + time.perf_counter() - started
    return timed


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
        runs: list[Run] = []
        for _ in range(a.runs):
            with tempfile.TemporaryDirectory(prefix="wb-bench-dispatch-") as tmp:
                schema = ""
                store = 'path = "state.db"'
                if kind == "postgres":
                    schema, store = _pg_store()
                try:
                    run = one(Path(tmp), store, a.steps)
                finally:
                    if schema:
                        _drop(schema)
                if run.sent != a.steps:
                    print(f"{kind}: only {run.sent} of {a.steps} sent")
                    return 1
                runs.append(run)
        mid = sorted(runs, key=lambda r: r.wall)[len(runs) // 2]
        per = mid.wall / a.steps * 1000
        print(f"{kind:>9}: {per:6.2f} ms a step (goal ≤ 2 ms: {'met' if per <= 2 else 'NOT met'}); "
              f"CPU {mid.cpu / a.steps * 1000:.2f} ms a step; {mid.statements / a.steps:.1f} SQL statements a step")
        for label, seconds in mid.parts.items():
            print(f"           {seconds / a.steps * 1000:6.2f} ms  {label}")
        rest = mid.wall - sum(mid.parts.values())
        print(f"           {rest / a.steps * 1000:6.2f} ms  the rest: re-check + claim transaction, chunk loads")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
