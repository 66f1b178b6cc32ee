"""Poll benchmark: welcomeback's ICS poll against a bare icalendar parse of the same file.

In one run, on one generated practice-management export (see generate.py):

  (a) bare: ``icalendar.Calendar.from_ical`` + ``recurring_ical_events.of(cal).between``
      over welcomeback's window (lookback 30 days, horizon 120 days) -- the unit;
  (b) cold poll: a fresh store, the first ``Engine.poll_one``;
  (c) unchanged poll: the same file again (the SHA-256 short-circuit);
  (d) one-change poll: the file rewritten with one upcoming appointment cancelled;
  (e) where (d)'s time goes: read+hash, icalendar parse, expansion, detection, store.

Times are the best of ``--repeat`` runs (``time.perf_counter``); peak memory is
``tracemalloc`` (Python allocations only) in separate, untimed runs.  Optionally
(on by default) an HTTP variant served from 127.0.0.1 with an ETag: cold poll,
unchanged poll answered 304, and unchanged poll answered 200 with the same body.

Then the ratio tables of bench_ratios.py (one-change, unchanged and cold poll over the bare
parse, median of ``--runs`` alternating runs) for ``--ratios`` sizes (default ``--events``), on
the one-off export and on a practice-style export of weekly series with overrides.

Exit status: 1 if the unchanged poll costs more than 1 % of the bare parse (the
one hard requirement), else 0; ``--no-limit`` prints the verdict and exits 0.  Usage:
``.venv/bin/python benchmarks/bench_poll.py [--events 5000] [--repeat 3] [--no-http]``
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_ratios
import generate
from harness import (
    CALENDAR,
    Feed,
    Practice,
    bare,
    checked,
    memory_probe,
    parse_entry,
    timed_poll,
)
from measure import Split, best_of, peak_mib, rss_growth_mib

LIMIT = 0.01  # unchanged poll / bare parse


# -- the run -------------------------------------------------------------------------------
def run(events: int, repeat: int, http: bool, out: Callable[[str], None] = print, limit: bool = True,
        ratios: list[int] | None = None, runs: int = 5, legacy: bool = True) -> int:
    """The table below, then the ratio tables (bench_ratios.py) for ``ratios`` sizes."""
    logging.disable(logging.CRITICAL)   # measure the work, not log formatting
    tmp = Path(tempfile.mkdtemp(prefix="wb-bench-"))
    try:
        status = _run(tmp, events, repeat, http, out, limit) if legacy else 0
        bench_ratios.run(tmp, ratios if ratios is not None else [events], runs, ["one-offs", "series"], out)
        return status
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        logging.disable(logging.NOTSET)


def _run(tmp: Path, events: int, repeat: int, http: bool, out: Callable[[str], None], limit: bool) -> int:
    gen = generate.generate(tmp / "practice", events=events)
    p = Practice(gen, gen.config)
    body = gen.ics.read_bytes()
    window = p.window()
    rows: list[tuple[str, float | None, str]] = []   # label, seconds, note

    # (a) bare
    parts = []
    for _ in range(repeat):
        gc.collect()
        parts.append(bare(body, window))
    occ_bare = parts[0][0]
    bare_s = min(x[1] + x[2] for x in parts)
    parse_s, query_s = min(x[1] for x in parts), min(x[2] for x in parts)
    rows += [("(a) bare parse + window query", bare_s, "the unit"),
             ("      of which Calendar.from_ical", parse_s, ""),
             ("      of which of(cal).between(window)", query_s, "")]

    # (b) cold poll: fresh store each time
    cold_times = []
    for _ in range(repeat):
        p.reset_store()
        cold_times.append(timed_poll(p)[0])
    cold_s = min(cold_times)
    stored, _ = p.counts()
    base = tmp / "baseline.db"
    p.snapshot(base)
    rows.append(("(b) cold poll (fresh store)", cold_s, f"{stored} sessions stored"))

    # (c) unchanged poll: same engine, same file, several times
    eng = p.engine()
    try:
        unchanged_times = []
        for _ in range(max(repeat, 5)):
            gc.collect()
            t0 = time.perf_counter()
            checked(eng.poll_one(CALENDAR))
            unchanged_times.append(time.perf_counter() - t0)
        unchanged_s = min(unchanged_times)
    finally:
        eng.close()
    read_hash_s, _ = best_of(max(repeat, 5), lambda: hashlib.sha256(gen.ics.read_bytes()).hexdigest())
    rows.append(("(c) unchanged poll (hash short-circuit)", unchanged_s,
                 f"median {sorted(unchanged_times)[len(unchanged_times) // 2] * 1e3:.1f} ms"))
    rows.append(("      of which file read + SHA-256", read_hash_s, ""))

    # (d)+(e) one appointment cancelled, polled from the baseline snapshot each time
    target = pick_target(gen)
    changed = gen.changed(target, status="CANCELLED")
    changed_times, best_split, triggers = [], Split(), 0
    for _ in range(repeat):
        p.reset_store(base)
        gen.ics.write_bytes(changed)
        split = Split()
        elapsed, res = timed_poll(p, split)
        changed_times.append(elapsed)
        if elapsed <= min(changed_times):
            best_split, triggers = split, res.triggers
    one_s = min(changed_times)
    _, seqs = p.counts()
    rows.append(("(d) one-change poll (1 event cancelled)", one_s,
                 f"{triggers} follow-up started; sequences: {', '.join(seqs) or 'none'}"))
    s = best_split.seconds
    if "parse" not in s or "expand" not in s:
        raise SystemExit("benchmark instrumentation: the one-change poll never reached IcsSource's parse")
    fetch, parse_, expand = s.get("fetch", 0.0), s.get("parse", 0.0), s.get("expand", 0.0)
    detection = s.get("reconcile", 0.0)
    load, save = s.get("load", 0.0), s.get("save", 0.0)
    rows += [("(e)   fetch: read, SHA-256, split by UID, kept", fetch - parse_, "ics_groups, source_groups"),
             ("(e)   fetch: decode + Calendar.from_ical", parse_ - expand, ""),
             ("(e)   fetch: expand window + build occurrences", expand, ""),
             ("(e)   detection: detect.reconcile", detection, ""),
             ("(e)   store: load previous snapshot", load, ""),
             ("(e)   store: save sessions", save, ""),
             ("(e)   rest: planning, calendar row, commits", one_s - fetch - detection - load - save, "")]
    gen.ics.write_bytes(body)

    # peak memory (untimed, tracemalloc makes everything slower)
    mem_bare = peak_mib(lambda: bare(body, window))
    p.reset_store()
    eng = p.engine()
    try:
        mem_cold = peak_mib(lambda: checked(eng.poll_one(CALENDAR)))
    finally:
        eng.close()
    p.reset_store()
    eng = p.engine()
    try:   # the same, with the peak reset once the file is read (IcsSource.parse starts)
        src, seen = eng.sources[CALENDAR], []
        entry = parse_entry(src)
        parse = getattr(src, entry)
        setattr(src, entry, lambda *a, **k: (tracemalloc.reset_peak(), seen.append(1), parse(*a, **k))[2])
        mem_cold_parse = peak_mib(lambda: checked(eng.poll_one(CALENDAR)))
        if not seen:
            raise SystemExit(f"benchmark instrumentation: IcsSource.{entry} was not called")
    finally:
        eng.close()

    mem_read = peak_mib(lambda: p.engine_free_read())
    rss_bare = rss_growth_mib(gen.folder, "bare")
    rss_cold = rss_growth_mib(gen.folder, "cold")

    occ_wb = best_split.occurrences

    http_rows: list[tuple[str, float | None, str]] = []
    if http:
        http_rows = http_variant(tmp, gen, body, repeat)

    # report
    out(f"welcomeback poll benchmark: {len(gen.appointments)} events, {gen.ics.stat().st_size / 1e6:.2f} MB, "
        f"{len(gen.clients)} clients; window {window.start:%Y-%m-%d} .. {window.end:%Y-%m-%d} "
        f"(now {gen.reference:%Y-%m-%d %H:%M %Z}); best of {repeat}")
    out(f"occurrences in window: bare {occ_bare}; parsed by the one-change poll {occ_wb} "
        f"(incremental: only the changed event); sessions stored {stored}")
    out("")
    out(f"{'measurement':<50} {'ms':>10} {'x bare':>9}  note")
    out("-" * 90)
    for label, sec, note in rows + http_rows:
        ms = f"{sec * 1e3:10.1f}" if sec is not None else f"{'-':>10}"
        ratio = f"{sec / bare_s:9.4f}" if sec is not None else f"{'-':>9}"
        out(f"{label:<50} {ms} {ratio}  {note}")
    out("-" * 90)
    out(f"peak traced memory (tracemalloc): bare {mem_bare:.1f} MiB, cold poll {mem_cold:.1f} MiB "
        f"({mem_cold / mem_bare:.2f} x bare)")
    out(f"  IcsSource's file read alone: {mem_read:.1f} MiB; cold poll from parse on: "
        f"{mem_cold_parse:.1f} MiB ({mem_cold_parse / mem_bare:.2f} x bare)")
    out(f"peak RSS growth (fresh process):  bare {rss_bare:.1f} MiB, cold poll {rss_cold:.1f} MiB "
        f"({rss_cold / max(rss_bare, 0.1):.2f} x bare)")
    ratio = unchanged_s / bare_s
    verdict = "OK" if ratio <= LIMIT else "FAIL"
    out(f"unchanged poll = {ratio * 100:.3f} % of the bare parse (limit {LIMIT * 100:.0f} %): {verdict}")
    return 0 if ratio <= LIMIT or not limit else 1


def pick_target(gen: generate.Generated, other_than: int | None = None) -> int:
    """An upcoming confirmed appointment a few days after "now" (inside the window).

    Preferably one whose client has nothing else booked in the next 14 days, so
    that the cancellation starts a follow-up instead of counting as a reschedule.
    """
    ref, appts = gen.reference, gen.appointments
    upcoming = [i for i, a in enumerate(appts)
                if ref + timedelta(days=2) <= a.start <= ref + timedelta(days=60) and not a.status and not a.no_show]
    if not upcoming:
        raise SystemExit("no upcoming appointment to change")
    if other_than is not None:    # another client's (a second, independent change)
        upcoming = [i for i in upcoming if appts[i].client != appts[other_than].client]
    for i in upcoming:
        a = appts[i]
        if not any(b.client == a.client and b is not a and not b.status
                   and a.start < b.start <= a.start + timedelta(days=14) for b in appts):
            return i
    return upcoming[0]


def http_variant(tmp: Path, gen: generate.Generated, body: bytes, repeat: int) -> list[tuple[str, float | None, str]]:
    """Cold, 304 and 200-same-body polls over a loopback HTTP feed."""
    rows: list[tuple[str, float | None, str]] = []
    folder = tmp / "http"
    folder.mkdir()
    shutil.copyfile(gen.folder / "clients.csv", folder / "clients.csv")
    with Feed(body) as feed:
        config = generate.write_config(folder, feed.url)
        hp = Practice(generate.Generated(folder, folder / "practice.ics", config, gen.clients,
                                         gen.appointments, gen.reference), config)
        cold = []
        for _ in range(repeat):
            hp.reset_store()
            cold.append(timed_poll(hp)[0])
        rows.append(("HTTP cold poll (200, 127.0.0.1)", min(cold), ""))
        eng = hp.engine()
        try:
            for honour, label in ((True, "HTTP unchanged poll, answered 304"),
                                  (False, "HTTP unchanged poll, 200 + same body (hash)")):
                feed.honour_etag = honour
                before = dict(feed.hits)
                t = []
                for _ in range(max(repeat, 5)):
                    gc.collect()
                    t0 = time.perf_counter()
                    checked(eng.poll_one(CALENDAR))
                    t.append(time.perf_counter() - t0)
                got = {k: feed.hits[k] - before[k] for k in feed.hits}
                rows.append((label, min(t), f"{got[304]}x304 {got[200]}x200"))
        finally:
            eng.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="welcomeback poll benchmark (ratios to a bare icalendar parse)")
    ap.add_argument("--events", type=int, default=generate.DEFAULT_EVENTS, help="appointments in the export")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions; the best is reported")
    ap.add_argument("--no-http", dest="http", action="store_false", help="skip the loopback HTTP variant")
    ap.add_argument("--no-limit", dest="limit", action="store_false",
                    help="print the verdict but exit 0 whatever the timings (the smoke test: no timing asserted)")
    ap.add_argument("--ratios", metavar="SIZES", help="sizes for the ratio tables, e.g. 5000,50000 "
                    "(default: --events); one-offs and series exports, median of --runs")
    ap.add_argument("--runs", type=int, default=5, help="alternating runs of the ratio tables (>= 5)")
    ap.add_argument("--ratios-only", action="store_true", help="skip the table above, print the ratios")
    ap.add_argument("--memory-probe", nargs=2, metavar=("WHAT", "FOLDER"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.memory_probe:
        return memory_probe(a.memory_probe[0], Path(a.memory_probe[1]))
    if a.events < 10 or a.repeat < 1:
        ap.error("--events must be >= 10 and --repeat >= 1")
    sizes = [int(x) for x in a.ratios.split(",")] if a.ratios else None
    return run(a.events, a.repeat, a.http, limit=a.limit, ratios=sizes, runs=max(a.runs, 1),
               legacy=not a.ratios_only)


if __name__ == "__main__":
    raise SystemExit(main())
