"""Netlib problems (small, quick subset): reference values and infeasibility detection.

The full set, with the problems this backend does not certify, is run by
``benchmarks/bench_solver.py --netlib`` (see docs/solver.md for the results).
"""

from __future__ import annotations

import pytest
from families import netlib_lp
from solver_helpers import NETLIB

import lpdsl
from lpdsl import Status

if not NETLIB.exists():
    pytest.skip(f"netlib data not found at {NETLIB}", allow_module_level=True)

SOLVED = ["AFIRO", "BLEND", "KB2", "RECIPE", "SC50A", "SC50B", "SC105"]
INFEASIBLE = ["itest2", "itest6", "galenet", "bgprtr", "ex73a"]


@pytest.mark.parametrize("name", SOLVED)
def test_netlib_value(name):
    A, b, c, obj = netlib_lp(str(NETLIB / f"{name}.npz"))
    sol = lpdsl.solve(A, b, c)
    assert sol.status == Status.OPTIMAL
    assert abs(float(sol.value) - obj) <= 1e-8 * max(1.0, abs(obj))


@pytest.mark.parametrize("name", INFEASIBLE)
def test_netlib_infeasible(name):
    A, b, c, _ = netlib_lp(str(NETLIB / "infeasible" / f"{name}.npz"))
    assert lpdsl.solve(A, b, c).status == Status.INFEASIBLE


def test_penalty_dual_completes_a_degenerate_active_set():
    # SCTAP1 (900 x 480) is degenerate: at eps = 1e-5 the recovered point violates weakly
    # active rows; adding them (completion) makes the active system's least-squares dual
    # negative, while the penalty dual relu(r)/eps stays dual feasible. Completing on the
    # strength of the penalty dual certifies it after 263 Newton iterations; stopping when the
    # least-squares dual failed left it to later stages (399 iterations).
    A, b, c, obj = netlib_lp(str(NETLIB / "SCTAP1.npz"))
    sol = lpdsl.solve(A, b, c, max_iter=300)
    assert sol.status == Status.OPTIMAL
    assert abs(float(sol.value) - obj) <= 1e-8 * max(1.0, abs(obj))
