"""Whole-process ratios (issue 11): ``welcomeback once`` as a real process against a bare parse in a
fresh Python, each with its start-up subtracted.

Every figure is the wall time of a child process: ``time.perf_counter()`` around
``subprocess.run``, from spawning it to its exit (interpreter start, imports, the work, exit).

- bare process: ``VENV/bin/python -c BARE FILE START END`` imports icalendar and
  recurring_ical_events, reads the file, ``Calendar.from_ical`` + ``of(cal).between(START, END)``
  over the engine's window (lookback 30 days, horizon 120 days) and prints the count.
  Its start-up: the same process on a file holding an empty VCALENDAR.
- ``VENV/bin/welcomeback --config CFG once --now T`` (the venv's console script): cold (a fresh
  store), unchanged (again, on the store the cold run left) and one-change (the cold run's store
  restored, the file rewritten with one upcoming appointment cancelled, as bench_poll does).  Each
  is the whole ``once``: poll and dispatch (the started follow-up's first step is not due yet).
  Its start-up: the same command on a config in its own folder whose calendar file is an empty
  VCALENDAR, with the same store kind (SQLite), the same clients.csv and other settings; on a
  fresh store before the cold run, on the store an earlier empty run left before the unchanged
  and one-change runs.
- net = process - its start-up, measured just before it in the same round; ratio = net / the bare
  process's net.  The verdicts use wall time; the same ratios in the child's CPU time (user +
  system, ``getrusage(RUSAGE_CHILDREN)``) are printed too.  On a shared 2-core machine two identical
  processes differ by ~0.1 s in either, so small nets need many ``--runs``.  Goals (bench_ratios.GOALS): one-change <= 0.05, unchanged <= 0.01, cold <= 1.2.

Each of ``--runs`` rounds, per size and export kind (``one-offs``: generate.py; ``series``:
generate_series.py), in this order: python without the libraries, bare start-up, bare, once
start-up (fresh), cold, once start-up, unchanged, once start-up, one-change.  The first two give
the libraries' import time, printed for reading the nets: welcomeback imports icalendar only when
it parses events, so its empty-calendar start-up leaves that import in the cold and one-change nets.  Medians are reported.  Every child's exit code
is checked, the cold run must store as many sessions as the bare parse found, the unchanged run
must start nothing, and the one-change run must store one more cancelled session and make exactly
one follow-up (open; on the series export closed at once as rebooked, the client's next weekly
session following): a run that measured an error path stops the benchmark (exit 1).  Files, stores and the outbox live in a temporary folder,
deleted at the end; nothing touches the network.  Children run with WELCOMEBACK_NO_KEYRING=1
(the outbox needs no secret) and without PYTHONDONTWRITEBYTECODE; welcomeback's own modules are
byte-compiled first, as a wheel install does.  Usage:
``.venv/bin/python benchmarks/bench_process.py [--sizes 5000,50000] [--runs 5] [--quick]``
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import logging
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ratios
import generate
from harness import Practice

import connectors
import daemon

EMPTY = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//welcomeback benchmark//empty//EN\r\nEND:VCALENDAR\r\n"
BARE = """\
import sys, warnings
from datetime import datetime
import icalendar, recurring_ical_events
warnings.simplefilter("ignore")
body = open(sys.argv[1], "rb").read()
cal = icalendar.Calendar.from_ical(body)
print(len(recurring_ical_events.of(cal).between(datetime.fromisoformat(sys.argv[2]),
                                                datetime.fromisoformat(sys.argv[3]))))
"""
NO_LIBRARIES = "import sys, warnings\nfrom datetime import datetime\n"   # BARE's start-up without the libraries
QUICK = 300
TIMEOUT = 900
KINDS = ("one-offs", "series")
NAMES = ("bare", "cold", "unchanged", "one-change", "imports")


@dataclass
class Child:
    """A finished child process: its wall time, its CPU time (user + system) and what it printed."""

    seconds: float
    cpu: float
    stdout: str


def spawn(args: list[str], cwd: Path) -> Child:
    """Run ``args`` in ``cwd``; its wall and CPU time.  Raises SystemExit when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["WELCOMEBACK_NO_KEYRING"] = "1"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)   # children are waited for one at a time
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed (exit {done.returncode}): {' '.join(args[:1] + args[-3:])}\n"
                         f"{done.stdout}{done.stderr}")
    return Child(elapsed, cpu, done.stdout)


def precompile() -> None:
    """Byte-compile welcomeback's own packages, as installing a wheel does: an editable install run
    under PYTHONDONTWRITEBYTECODE would otherwise compile every module from source in each child."""
    for package in (daemon, connectors):
        compileall.compile_dir(str(Path(package.__file__ or "").parent), quiet=1)


def bin_dir() -> Path:
    """The venv's bin folder (this interpreter's), which must hold the welcomeback console script."""
    folder = Path(sys.executable).parent
    if not (folder / "welcomeback").is_file():
        raise SystemExit(f"no welcomeback console script next to {sys.executable}: run this with the venv's python")
    return folder


class Setup:
    """One export and its empty twin, with the commands that measure them."""

    def __init__(self, folder: Path, events: int, kind: str) -> None:
        self.gen, self.changed = bench_ratios.export(folder / "practice", events, kind)
        self.body = self.gen.ics.read_bytes()
        self.practice = Practice(self.gen, self.gen.config)
        empty = folder / "empty"
        empty.mkdir()
        shutil.copyfile(self.gen.folder / "clients.csv", empty / "clients.csv")
        (empty / "empty.ics").write_bytes(EMPTY)
        config = generate.write_config(empty, "empty.ics")
        self.empty = Practice(generate.Generated(empty, empty / "empty.ics", config, self.gen.clients, [],
                                                 self.gen.reference), config)
        window = self.practice.window()
        self.window = [window.start.isoformat(), window.end.isoformat()]
        self.bin = bin_dir()
        self.cold_store = folder / "cold.db"
        self.changed_summary = ""

    def bare(self, practice: Practice) -> Child:
        return spawn([str(self.bin / "python"), "-c", BARE, str(practice.gen.ics), *self.window], practice.gen.folder)

    def once(self, practice: Practice) -> Child:
        return spawn([str(self.bin / "welcomeback"), "--config", str(practice.config_path),
                      "once", "--now", practice.gen.reference.isoformat()], practice.gen.folder)

    def round(self) -> dict[str, tuple[Child, Child]]:
        """One alternating round: (process, its start-up) of each measurement."""
        p, e = self.practice, self.empty
        plain = spawn([str(self.bin / "python"), "-c", NO_LIBRARIES], e.gen.folder)
        startup = self.bare(e)
        bare = self.bare(p)
        expected = _count(bare, startup)
        self.gen.ics.write_bytes(self.body)
        p.reset_store()
        e.reset_store()
        out = {"bare": (bare, startup), "imports": (startup, plain)}
        fresh = self.once(e)
        cold = self.once(p)
        _expect(fresh, e, 0, [])
        _expect(cold, p, expected, [])
        out["cold"] = (cold, fresh)
        cancelled = _cancelled(p)
        p.snapshot(self.cold_store)
        warm = self.once(e)
        unchanged = self.once(p)
        _expect(unchanged, p, expected, [])
        out["unchanged"] = (unchanged, warm)
        p.reset_store(self.cold_store)
        self.gen.ics.write_bytes(self.changed)
        warm = self.once(e)
        changed = self.once(p)
        self.changed_summary = _expect(changed, p, expected, None)
        if _cancelled(p) != cancelled + 1:
            raise SystemExit(f"benchmark: the one-change run left {_cancelled(p)} cancelled sessions, not {cancelled + 1}")
        out["one-change"] = (changed, warm)
        self.gen.ics.write_bytes(self.body)
        return out


def _count(bare: Child, startup: Child) -> int:
    """The bare parse's occurrences in the window (the empty file's must be none)."""
    if int(startup.stdout.split()[-1]) != 0:
        raise SystemExit(f"bare start-up found occurrences in the empty calendar: {startup.stdout}")
    return int(bare.stdout.split()[-1])


def _expect(child: Child, practice: Practice, stored: int, sequences: list[str] | None) -> str:
    """`once` polled for real: the sessions it stored, the follow-ups it made (``None``: exactly one for a
    cancellation, open or closed at once as rebooked) and its summary line, which is returned."""
    n, seqs = practice.counts()
    one = sequences is None and len(seqs) == 1 and seqs[0].startswith("cancelled/")
    if n != stored or not (one or seqs == sequences):
        raise SystemExit(f"benchmark: the store holds {n} sessions and follow-ups {seqs}; "
                         f"expected {stored} (the bare parse's count) and {sequences or 'one cancellation'}")
    line = f"1 calendar(s) polled, {sum(s.endswith('/open') for s in seqs)} follow-up(s) started"
    summary = child.stdout.strip().splitlines()[-1] if child.stdout.strip() else ""
    if not summary.startswith(line):
        raise SystemExit(f"benchmark: `welcomeback once` did not report {line!r}: {child.stdout}")
    return summary


def _cancelled(practice: Practice) -> int:
    """Sessions stored as cancelled (read-only, straight from the SQLite file)."""
    with contextlib.closing(sqlite3.connect(f"file:{practice.db}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM sessions WHERE status = 'cancelled'").fetchone()[0])


def measure(folder: Path, events: int, kind: str, runs: int) -> tuple[dict[str, list[tuple[Child, Child]]], str]:
    """(process, start-up) of each measurement, per round; the one-change run's summary line."""
    setup = Setup(folder, events, kind)
    setup.bare(setup.empty)                # untimed warm-up: bytecode caches, the empty store's schema
    setup.once(setup.empty)
    rounds = [setup.round() for _ in range(runs)]
    return {name: [r[name] for r in rounds] for name in NAMES}, setup.changed_summary


def report(events: int, kind: str, runs: int, children: dict[str, list[tuple[Child, Child]]], summary: str,
           out: Callable[[str], None] = print) -> None:
    def med(name: str, i: int) -> float:
        return statistics.median(pair[i].seconds for pair in children[name]) * 1e3

    nets = {name: [proc.seconds - start.seconds for proc, start in children[name]] for name in NAMES}
    cpu = {name: statistics.median(proc.cpu - start.cpu for proc, start in children[name]) for name in NAMES}
    bare = statistics.median(nets["bare"])
    out(f"whole processes: {events} appointments ({kind}), median of {runs} alternating runs; "
        f"bare process {med('bare', 0):.0f} ms, its start-up {med('bare', 1):.0f} ms, net (the bare parse) "
        f"{bare * 1e3:.0f} ms (CPU time {cpu['bare'] * 1e3:.0f} ms)")
    for name, goal in bench_ratios.GOALS.items():
        net = statistics.median(nets[name])
        pairs = statistics.median(n / b for n, b in zip(nets[name], nets["bare"]))
        verdict = "meets" if net / bare <= goal else "misses"
        if net < 0:
            verdict += ", below the start-up's noise"
        out(f"  {name + ' poll / bare':<24} {net / bare:8.4f}  (once {med(name, 0):7.1f} ms, start-up "
            f"{med(name, 1):6.1f} ms, net {net * 1e3:7.1f} ms; median of per-run ratios {pairs:.4f}; "
            f"CPU time {cpu[name] / cpu['bare']:.4f}; goal <= {goal}: {verdict})")
        if name != "unchanged":      # it never imports the libraries
            alike = statistics.median(n - i for n, i in zip(nets[name], nets["imports"]))
            out(f"  {'':<24} {alike / bare:8.4f}  (the libraries' import counted as start-up, as in the bare's: "
                f"net {alike * 1e3:7.1f} ms; goal <= {goal}: {'meets' if alike / bare <= goal else 'misses'})")
    out(f"  one-change once said: {summary}")
    out(f"  importing icalendar + recurring_ical_events: {statistics.median(nets['imports']) * 1e3:.0f} ms "
        f"(bare start-up - the same python -c without them); in the bare's start-up, but not in the "
        f"empty-calendar once's (it never imports them), so in the cold and one-change nets")


def run(sizes: list[int], runs: int, kinds: list[str], in_process: bool = False,
        out: Callable[[str], None] = print) -> int:
    out("whole-process ratios: wall time of each child process (time.perf_counter around subprocess.run; the verdicts); "
        "CPU time: its user + system time (getrusage), a second view;")
    out("  start-up = the same command on an empty VCALENDAR (welcomeback once: same store kind and settings, "
        "a fresh store before the cold run, a used one otherwise);")
    out("  net = the median of each run's (process - its start-up); ratio = net / the bare process's net")
    precompile()
    tmp = Path(tempfile.mkdtemp(prefix="wb-process-"))
    try:
        for events in sizes:
            for kind in kinds:
                out("")
                report(events, kind, runs, *measure(tmp / f"{kind}-{events}", events, kind, runs), out=out)
        if in_process:
            logging.disable(logging.CRITICAL)
            bench_ratios.run(tmp, sizes, runs, kinds, out)
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        logging.disable(logging.NOTSET)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="whole-process ratios: welcomeback once against a bare parse, "
                                 "start-up subtracted")
    ap.add_argument("--sizes", default="5000,50000", help="appointments per export, e.g. 5000,50000")
    ap.add_argument("--runs", type=int, default=5, help="alternating rounds; medians reported (default 5)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="one-offs, series or both (default)")
    ap.add_argument("--quick", action="store_true", help=f"smoke size: {QUICK} appointments (overrides --sizes)")
    ap.add_argument("--in-process", action="store_true",
                    help="also print bench_ratios' in-process tables for the same sizes")
    a = ap.parse_args(argv)
    sizes = [QUICK] if a.quick else [int(x) for x in a.sizes.split(",")]
    kinds = [k.strip() for k in a.kinds.split(",")]
    if a.runs < 1 or min(sizes) < 10 or not set(kinds) <= set(KINDS):
        ap.error("--runs must be >= 1, sizes >= 10, kinds among " + ", ".join(KINDS))
    return run(sizes, a.runs, kinds, a.in_process)


if __name__ == "__main__":
    raise SystemExit(main())
