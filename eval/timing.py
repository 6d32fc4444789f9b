"""Wall-clock timing of a call, as the benchmarks report it (minimum / median over repeats)."""

from __future__ import annotations

import time
from typing import Callable


def wall_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
