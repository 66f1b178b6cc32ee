"""How the benchmarks measure: best-of timings, peak and resident memory in a fresh process,
and a profile split of where a poll's time goes."""

from __future__ import annotations

import contextlib
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))



# -- helpers -------------------------------------------------------------------------------
def best_of(repeat: int, run: Callable[[], Any], setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls of ``run`` (``setup`` untimed before each)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        if setup:
            setup()
        gc.collect()
        t0 = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - t0)
    return best, result


def rss_growth_mib(folder: Path, what: str) -> float:
    """Growth of the peak RSS during one bare parse or cold poll, in a fresh process, MiB."""
    script = Path(__file__).with_name("bench_poll.py")   # its --memory-probe runs harness.memory_probe
    out = subprocess.run([sys.executable, str(script), "--memory-probe", what, str(folder)],
                         check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["rss_growth_mib"])


def peak_rss_kib() -> int:
    """This process's peak RSS in KiB: VmHWM on Linux (ru_maxrss survives exec from a big parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_mib(run: Callable[[], Any]) -> float:
    """Peak traced Python memory of one call, MiB."""
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


class Split:
    """Accumulates wall time of wrapped callables by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.occurrences = -1   # what the last wrapped parse returned

    def count(self, parse: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap ``IcsSource.parse`` to remember how many occurrences it produced."""
        def counted(*args: Any, **kwargs: Any) -> Any:
            result = parse(*args, **kwargs)
            self.occurrences = len(result[0])
            return result
        return counted

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t0
        return timed


@contextlib.contextmanager
def patched(obj: Any, attr: str, value: Any) -> Iterator[None]:
    """Temporarily replace ``obj.attr`` (benchmark instrumentation only)."""
    old = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, old)
