"""The poll's costs as ratios to a bare parse, for the incremental iCal goals (issue 11).

For each size and each kind of export (``one-offs``: generate.py, one VEVENT per appointment;
``series``: generate_series.py, weekly RRULE courses with overrides), ``runs`` alternating
rounds of, in this order: (a) a bare parse + window query, (b) a cold poll (fresh store),
(c) an unchanged poll and (d) a one-change poll (one upcoming appointment cancelled), each (b)-(d)
with a fresh Engine (construction untimed) on the store the cold poll left.  Alternating keeps a
busy machine's drift out of the ratios; the medians are reported.  Goals: one-change <= 0.05,
unchanged <= 0.01, cold <= 1.2 of the bare parse.
"""

from __future__ import annotations

import gc
from dataclasses import replace
import statistics
import time
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate
import generate_series
from harness import CALENDAR, Practice, bare, checked, timed_poll

GOALS = {"cold": 1.2, "unchanged": 0.01, "one-change": 0.05}


def export(folder: Path, events: int, kind: str) -> tuple[generate.Generated, bytes]:
    """Write the ``kind`` export of ``events`` appointments into ``folder``; return it and the
    same export's bytes with one upcoming appointment cancelled."""
    gen, changed, _, _ = export_with_warm_up(folder, events, kind)
    return gen, changed


def export_with_warm_up(folder: Path, events: int, kind: str) -> tuple[generate.Generated, bytes, bytes, bytes]:
    """``export``'s, plus the export with another client's upcoming appointment cancelled (the
    service's warm-up change) and the export with both cancelled."""
    if kind == "series":
        series = generate_series.generate_series(folder, events=events)
        return (series.generated, series.one_cancelled(), series.one_cancelled((1,)),
                series.one_cancelled((0, 1)))
    gen = generate.generate(folder, events=events)
    from bench_poll import pick_target

    target = pick_target(gen)
    other = pick_target(gen, other_than=target)
    both = list(gen.appointments)
    for i in (target, other):
        both[i] = replace(both[i], status="CANCELLED")
    return (gen, gen.changed(target, status="CANCELLED"), gen.changed(other, status="CANCELLED"),
            generate.render(both, gen.clients))


def measure(folder: Path, events: int, kind: str, runs: int) -> dict[str, list[float]]:
    """Seconds of each measurement per run."""
    gen, changed, warm, both = export_with_warm_up(folder, events, kind)
    body = gen.ics.read_bytes()
    p = Practice(gen, gen.config)
    window = p.window()
    base = folder / "cold.db"
    out: dict[str, list[float]] = {"bare": [], "cold": [], "unchanged": [], "one-change": [],
                                   "unchanged (service)": [], "one-change (service)": []}
    for _ in range(runs):
        gc.collect()
        _, parse_s, query_s = bare(body, window)
        out["bare"].append(parse_s + query_s)
        gen.ics.write_bytes(body)
        p.reset_store()
        out["cold"].append(timed_poll(p)[0])
        p.snapshot(base)
        out["unchanged"].append(timed_poll(p)[0])
        p.reset_store(base)
        gen.ics.write_bytes(changed)
        out["one-change"].append(timed_poll(p)[0])
        gen.ics.write_bytes(body)
        p.reset_store(base)
        unchanged, one_change = service_polls(p, warm, both)
        out["unchanged (service)"].append(unchanged)
        out["one-change (service)"].append(one_change)
    gen.ics.write_bytes(body)
    return out


def service_polls(p: Practice, warm: bytes, both: bytes) -> tuple[float, float]:
    """A running service's polls: one Engine (as ``run`` keeps), warmed by untimed polls of the
    cold store's feed and of another client's cancellation (``warm``: a service has applied
    changes before, so their statements are compiled), then an unchanged poll and a one-change
    poll (``both``: the measured cancellation on top), each timed."""
    eng = p.engine()
    try:
        checked(eng.poll_one(CALENDAR))
        p.gen.ics.write_bytes(warm)
        checked(eng.poll_one(CALENDAR))
        gc.collect()
        t0 = time.perf_counter()
        checked(eng.poll_one(CALENDAR))
        unchanged = time.perf_counter() - t0
        p.gen.ics.write_bytes(both)
        gc.collect()
        t0 = time.perf_counter()
        checked(eng.poll_one(CALENDAR))
        return unchanged, time.perf_counter() - t0
    finally:
        eng.close()


def report(events: int, kind: str, runs: int, seconds: dict[str, list[float]],
           out: Callable[[str], None] = print) -> None:
    bare_s = statistics.median(seconds["bare"])
    out(f"ratios: {events} appointments ({kind}), median of {runs} alternating runs; "
        f"bare parse {bare_s * 1e3:.0f} ms")
    for name, goal in GOALS.items():
        med = statistics.median(seconds[name])
        pairs = statistics.median(s / b for s, b in zip(seconds[name], seconds["bare"]))
        verdict = "meets" if med / bare_s <= goal else "misses"
        out(f"  {name + ' poll / bare':<24} {med / bare_s:8.4f}  ({med * 1e3:8.1f} ms; median of per-run "
            f"ratios {pairs:.4f}; goal <= {goal}: {verdict})")
    for name, goal in (("unchanged (service)", GOALS["unchanged"]), ("one-change (service)", GOALS["one-change"])):
        med = statistics.median(seconds[name])
        out(f"  {name.replace(' (', ' poll (', 1) + ' / bare':<32} {med / bare_s:8.4f}  ({med * 1e3:8.1f} ms; one Engine "
            f"kept, as run keeps it, warmed by an earlier change; goal <= {goal}: {'meets' if med / bare_s <= goal else 'misses'})")


def run(tmp: Path, sizes: list[int], runs: int, kinds: list[str], out: Callable[[str], None] = print) -> None:
    for events in sizes:
        for kind in kinds:
            folder = tmp / f"ratios-{kind}-{events}"
            out("")
            report(events, kind, runs, measure(folder, events, kind, runs), out)
