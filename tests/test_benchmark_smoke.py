"""The poll benchmark cannot rot: generator and benchmark run at a tiny size.

No timing is asserted here: ratios are printed by the script, not checked, and the
script runs with ``--no-limit`` so a loaded machine cannot fail the suite (its 1 %
verdict is still printed; run it without the flag to enforce it).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from daemon import config as config_mod
from daemon.client_files import load_directory

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wb_bench_generate", BENCH / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_generator_is_deterministic_and_welcomeback_reads_its_output(tmp_path: Path) -> None:
    gen = _generator()
    a = gen.generate(tmp_path / "a", events=200)
    b = gen.generate(tmp_path / "b", events=200)
    body = a.ics.read_bytes()
    assert body == b.ics.read_bytes()
    assert body.count(b"BEGIN:VEVENT") == 200
    assert b"BEGIN:VTIMEZONE" in body and b"DTSTART;TZID=America/New_York:" in body
    assert b"STATUS:CANCELLED" in body and b"ATTENDEE;" in body
    csv = (a.folder / "clients.csv").read_text()
    assert csv.splitlines()[0] == "name,aliases,email,phone,preferred_channel,do_not_contact"
    assert len(load_directory(a.folder / "clients.csv").clients) == 150
    config = config_mod.load(a.config)
    assert [c.name for c in config.calendars] == ["main"]
    assert config.store.path == "state.db"


def test_benchmark_runs_and_exits_zero(tmp_path: Path) -> None:
    # 500 events: at 200 the poll's fixed bookkeeping (~1 ms) is already about 1 % of
    # the bare parse, so the script's own 1 % check would measure noise, not the hash path.
    # One run of the ratio tables that follow: their five alternating runs are test_ratio_tables_run's.
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_poll.py"), "--events", "500", "--repeat", "1", "--no-limit",
         "--runs", "1"],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for row in ("(a) bare parse", "(b) cold poll", "(c) unchanged poll", "(d) one-change poll",
                "(e)   detection", "HTTP unchanged poll, answered 304", "peak traced memory",
                "peak RSS growth", "of the bare parse (limit 1 %): "):
        assert row in out, out          # the verdict is printed, whichever it is (a loaded machine)
    assert "1 follow-up started" in out, out
    assert not list(tmp_path.iterdir())  # the script's temp folder (under TMPDIR) is gone


def test_distant_event_benchmark_runs(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "bench_distant.py"), "--events", "300", "--repeat", "1"],
                          check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "distant one-offs skipped" in proc.stdout


def test_ratio_tables_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_poll.py"), "--ratios", "300", "--ratios-only", "--runs", "5"],
        check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for kind in ("one-offs", "series"):
        assert f"ratios: 300 appointments ({kind}), median of 5 alternating runs" in out, out
    for row in ("cold poll / bare", "unchanged poll / bare", "one-change poll / bare",
                "unchanged poll (service) / bare", "one-change poll (service) / bare"):
        assert out.count(row) == 2, out
    assert not list(tmp_path.iterdir())


def test_replica_benchmark_runs_two_replicas_without_duplicates() -> None:
    """bench_replicas at a tiny size: two real replicas on PostgreSQL share the work (exit 0 means
    every step sent once and both stopped cleanly; the figures are printed, not checked)."""
    import pytest

    from tests.conftest import postgres_available

    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    done = subprocess.run([sys.executable, str(BENCH / "bench_replicas.py"), "--calendars", "3", "--per", "2",
                           "--window", "6", "--replicas", "2"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, WELCOMEBACK_NO_KEYRING="1"))
    assert done.returncode == 0, done.stdout + done.stderr
    row = done.stdout.splitlines()[-1].split()
    assert row[0] == "2" and row[1] == "6/6" and row[-1] == "0", done.stdout


def test_whole_process_benchmark_runs(tmp_path: Path) -> None:
    """bench_process at its --quick size, one round: real `welcomeback once` processes (the script
    checks their exit codes, the sessions stored and the follow-up started); figures not checked."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_process.py"), "--quick", "--runs", "1"],
                          check=False, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "start-up = the same command on an empty VCALENDAR" in out, out
    for kind in ("one-offs", "series"):
        assert f"whole processes: 300 appointments ({kind}), median of 1 alternating runs" in out, out
    for row in ("cold poll / bare", "unchanged poll / bare", "one-change poll / bare"):
        assert out.count(row) == 2, out
    assert "one-change once said: 1 calendar(s) polled, 1 follow-up(s) started" in out, out
    assert not list(tmp_path.iterdir())
