"""Timing shared by the benchmarks: the best of repeated runs after a warm-up.

On a shared machine noise only ever adds time, so the minimum is the most reproducible
statistic (medians of 3 moved by up to 1.5x between identical runs here).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(
    fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Minimum of ``clock`` over ``repeats`` calls of ``fn`` after one warm-up call (pattern
    analysis, compiled-model and cvxpy caches), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return best
