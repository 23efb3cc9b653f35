"""Timing shared by the benchmarks: the best of repeated runs after a warm-up.

On a shared machine noise only ever adds time, so the minimum is the most reproducible
statistic (medians of 3 moved by up to 1.5x between identical runs here). Fast calls are
repeated until about a second has been spent (like ``timeit``'s autorange): over eight trials
of one AUC 32x32 solve (3.2-6.6 ms), the best of 5 spread 1.9x, the best of up to 50 1.5x.

Two things whose ratio is reported are timed in alternating blocks (:func:`best_times`): the
machine's slow and quiet periods last seconds to minutes, and timed one after the other the
two minima came from different periods (a peer's batch took 1.9 s in one run and 3.2 s in
the next, and with it the ratio moved). Blocks of a few calls, not single calls, because a
call right after the other side's is slower by its cold caches (one AUC 32x32 loss step:
1.6 ms back to back, 2.1-2.3 ms right after a cvxpylayers call), and the minimum of a block
is a warm call, as in a loop that calls one of them repeatedly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def peer_solvers(jobs: int = 1) -> list[tuple[str, dict[str, object]]]:
    """cvxpylayers' ``solver_args`` for the peers, ``[("default", ...), ("Clarabel", ...)]``,
    with diffcp's batch thread pool at ``jobs`` threads: 1, as lpdsl's
    ``torch.set_num_threads(1)``, unless a benchmark asks for the pool (-1: every core)."""
    pool = {"n_jobs_forward": jobs, "n_jobs_backward": jobs}
    return [("default", pool), ("Clarabel", {"solve_method": "Clarabel", **pool})]


#: Seconds a fast measurement may take in all (``--quick`` smoke runs set 0).
BUDGET_S = 1.0


def best_time(
    fn: Callable[[], object],
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    max_repeats: int = 50,
) -> float:
    """Minimum of ``clock`` over at least ``repeats`` calls of ``fn`` after one warm-up call
    (pattern analysis, compiled-model and cvxpy caches), in seconds; more calls, up to
    ``max_repeats``, while their total stays under ``BUDGET_S`` seconds."""
    return best_times([fn], repeats, clock, max_repeats, block=1)[0]


def best_times(
    fns: Sequence[Callable[[], object]],
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    max_repeats: int = 50,
    block: int = 3,
    warmup: bool = True,
) -> list[float]:
    """:func:`best_time` of each of ``fns``, timed in rounds of ``block`` consecutive calls of
    each, so that every minimum is drawn from the same stretch of the machine's time; the
    rounds go on while their total stays under ``BUDGET_S`` seconds per function.
    ``warmup=False`` skips the first, untimed call (for callers that have just made it)."""
    for fn in fns if warmup else ():
        fn()
    best = [float("inf")] * len(fns)
    spent, count = 0.0, 0
    while count < repeats or (spent < BUDGET_S * len(fns) and count < max_repeats):
        for i, fn in enumerate(fns):
            for _ in range(block):
                t0 = clock()
                fn()
                dt = clock() - t0
                best[i], spent = min(best[i], dt), spent + dt
        count += block
    return best
