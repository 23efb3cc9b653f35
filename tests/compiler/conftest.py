"""Shared helpers of the compiler tests: an independent LP solve and a CVXPY comparison.

Nothing here goes through lpdsl's oracle: each test writes the model directly in CVXPY too,
so a disagreement points at the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cvxpy as cp
import numpy as np
import pytest
import torch
from scipy.optimize import linprog


def solve_standard_form(A: Any, b: Any, c: Any) -> Any:
    """Solve min c·x s.t. A x <= b (x free) with HiGHS; returns scipy's result."""

    def to_np(t: Any) -> np.ndarray:
        return t.detach().cpu().double().numpy()

    return linprog(to_np(c), A_ub=to_np(A), b_ub=to_np(b), bounds=(None, None), method="highs")


def compare_with_cvxpy(
    problem: Any,
    params: list[np.ndarray],
    build_cvxpy: Callable[..., tuple[Any, dict[Any, Any]]],
    tol: float = 1e-6,
) -> dict[Any, np.ndarray]:
    """Compile, solve with HiGHS, and check value, recovered point and feasibility.

    ``build_cvxpy(*params)`` returns ``(cvxpy problem, {lpdsl variable: cvxpy variable})``.
    Returns the recovered point.
    """
    compiled = problem.compile()
    values = [torch.as_tensor(np.asarray(p, dtype=np.float64)) for p in params]
    A, b, c = compiled.standard_form(*values)
    assert A.shape == (compiled.n_rows, compiled.n_cols)
    res = solve_standard_form(A, b, c)
    assert res.status == 0, res.message
    x = torch.as_tensor(res.x)
    cvx_prob, mapping = build_cvxpy(*[np.asarray(p, dtype=np.float64) for p in params])
    cvx_prob.solve(solver=cp.CLARABEL)
    assert cvx_prob.status == "optimal", cvx_prob.status
    value = float(compiled.value(x, *values))
    scale = 1 + abs(cvx_prob.value)
    assert abs(value - cvx_prob.value) <= tol * scale * 100, (value, cvx_prob.value)
    recovered = {v: t.numpy() for v, t in compiled.recover(x).items()}
    assert set(recovered) == set(compiled.variables)
    # the recovered point is feasible for the original model and attains the optimum
    for v, cv in mapping.items():
        assert recovered[v].shape == v.shape
        cv.value = recovered[v]
    for con in cvx_prob.constraints:
        assert np.all(con.violation() <= 1e-6 * scale), con
    assert abs(cvx_prob.objective.value - cvx_prob.value) <= 1e-5 * scale
    return recovered


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def compare() -> Callable[..., dict[Any, np.ndarray]]:
    """:func:`compare_with_cvxpy`."""
    return compare_with_cvxpy


@pytest.fixture
def solve_lp() -> Callable[..., Any]:
    """:func:`solve_standard_form`."""
    return solve_standard_form
