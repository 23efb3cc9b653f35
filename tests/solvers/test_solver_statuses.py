"""Statuses of float32 arithmetic on infeasible LPs (docs/solver.md §8).

The LPs come from ``benchmarks/bench_statuses.py``, which compares every status with HiGHS.
"""

from __future__ import annotations

import numpy as np
import torch
from bench_statuses import draw
from solver_helpers import highs

import lpdsl
from lpdsl import Status

HIGHS_STATUS = {0: Status.OPTIMAL, 2: Status.INFEASIBLE, 3: Status.UNBOUNDED}


def test_float32_farkas_test_allows_for_its_rounding():
    # Feasible but for two contradictory rows. In float32 the rounding of A_s^T r alone
    # exceeded the float64 Farkas ratio 1e-6, and most of these ended MAX_ITER.
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(16, 230, 36, generator=gen, dtype=torch.float64)
    x0 = torch.randn(16, 36, generator=gen, dtype=torch.float64)
    b = (A @ x0.unsqueeze(-1)).squeeze(-1) + torch.rand(16, 230, generator=gen)
    A[:, 1] = -A[:, 0]
    b[:, :2] = -1.0  # a.x <= -1 and -a.x <= -1
    sol = lpdsl.solve(A, b, torch.randn(16, 36, generator=gen), compute_dtype=torch.float32)
    assert (sol.status == Status.INFEASIBLE).all(), sol.status.tolist()


def test_float32_far_point_of_an_infeasible_lp_is_not_feasible():
    # bench_statuses.py --seed 4 --float32: item 1 of this batch is infeasible, and its
    # feasibility stage drifted along the LP's recession cone to |y| = 1.7e6 with a violation
    # of 0.23, which a feasibility test relative to |y| (or allowing for the rounding of A y)
    # accepted: UNBOUNDED, wrongly. Every status must agree with HiGHS or be MAX_ITER.
    rng = np.random.default_rng(4)
    while True:
        kind, A, b, c = draw(rng)
        if kind == "infeasible" and A.shape[1:] == (37, 39):
            break
    sol = lpdsl.solve(
        torch.tensor(A), torch.tensor(b), torch.tensor(c), compute_dtype=torch.float32
    )
    for i in range(A.shape[0]):
        ref = HIGHS_STATUS[highs(A[i], b[i], c[i]).status]
        assert int(sol.status[i]) in (int(ref), int(Status.MAX_ITER)), (i, sol.status.tolist())


def test_unbounded_lp_that_highs_presolve_calls_infeasible():
    # bench_statuses.py --seed 31, the second draw (degenerate kind, 7 x 5), item 1: HiGHS
    # with presolve answers "infeasible"; without presolve "unbounded". The LP is feasible
    # by construction (b = A x0 + slack) and has a ray, so lpdsl's UNBOUNDED is checked here
    # against that evidence, not against a HiGHS status.
    rng = np.random.default_rng(31)
    draw(rng)
    kind, A, b, c = draw(rng)
    assert kind == "degenerate" and A.shape[1:] == (7, 5)
    A, b, c = A[1], b[1], c[1]
    sol = lpdsl.solve(torch.tensor(A), torch.tensor(b), torch.tensor(c))
    assert int(sol.status) == Status.UNBOUNDED
    x = sol.x.numpy()
    assert (A @ x - b).max() <= 1e-9 * (1.0 + np.abs(b).max())  # the point it reports
    from scipy.optimize import linprog

    ray = linprog(c, A_ub=A, b_ub=np.zeros(len(b)), bounds=(-1.0, 1.0), method="highs")
    assert ray.status == 0 and ray.fun < -1.0  # A d <= 0 with c.d < 0: unbounded below
