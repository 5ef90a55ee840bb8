"""How long a call takes: the median of repeated runs, for compare.py's table and the benchmarks in bench/."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], *, runs: int = 5, min_time: float = 0.0, warmup: int = 3) -> float:
    """Median seconds per call of ``fn`` after ``warmup`` untimed calls, over at least ``runs`` calls and at
    least ``min_time`` seconds of them. The median, not the mean: one call delayed by another process on a
    shared machine does not move it."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
