"""What leaving distant one-off events out of the text saves (connectors/calendars/ics_split.py).

``IcsSource.parse_full`` of the generated export with and without ``skip_distant``, alternating,
median of ``--repeat`` runs each, in process.  This is the cost of a cold poll or of any poll
after a byte changed (the whole file is still parsed: incremental parsing is not built yet).

    .venv/bin/python benchmarks/bench_distant.py              # 5,000 events, 5 runs each
    .venv/bin/python benchmarks/bench_distant.py --events 500 --repeat 1
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.calendars.base import SourceContext, Window  # noqa: E402
from connectors.calendars.ics import IcsSource  # noqa: E402
from daemon.clock import FixedClock  # noqa: E402

TZ = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 2, 12, tzinfo=TZ)        # generate.py's reference instant


def _generate(folder: Path, events: int) -> Path:
    spec = importlib.util.spec_from_file_location("wb_bench_generate", Path(__file__).with_name("generate.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return Path(module.generate(folder, events=events).ics)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=5000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        body = _generate(Path(tmp) / "export", args.events).read_bytes()
    window = Window(NOW - timedelta(days=30), NOW + timedelta(days=120))
    ctx = SourceContext(base_dir=Path("."), timezone=TZ, clock=FixedClock(NOW), secret=lambda n: "",
                        state_dir=Path("."))
    source = IcsSource("main", "practice.ics", None, ctx)
    times: dict[bool, list[float]] = {True: [], False: []}
    counts: dict[bool, int] = {}
    for _ in range(args.repeat):
        for skip in (False, True):
            t = time.perf_counter()
            occurrences, _, _ = source.parse_full(body, window, skip_distant=skip)
            times[skip].append(time.perf_counter() - t)
            counts[skip] = len(occurrences)
    full, fast = (statistics.median(times[k]) * 1000 for k in (False, True))
    print(f"{args.events} events, {len(body) / 2**20:.2f} MB; occurrences in window: "
          f"full {counts[False]}, skipping {counts[True]}")
    print(f"parse_full, every event parsed        {full:9.1f} ms   1.000")
    print(f"parse_full, distant one-offs skipped  {fast:9.1f} ms   {fast / full:.3f}")
    return 0 if counts[False] == counts[True] else 1


if __name__ == "__main__":
    sys.exit(main())
