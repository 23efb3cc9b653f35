"""The shared metric tester (torchmetrics style): data makers and the common checks.

Every metric test goes through the ``tester`` fixture, so the comparison with the reference
(scikit-learn), with CVXPY (through ``problem.to_cvxpy``), the gradient-direction check and
the float32 check are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # a shared 2-core machine: OpenMP threads spin against each other


class MetricTester:
    """Checks shared by the metric tests."""

    # ------------------------------------------------------------------ data

    @staticmethod
    def labels(n: int, seed: int, pos_rate: float = 0.4) -> torch.Tensor:
        """Binary labels with at least one of each class."""
        gen = torch.Generator().manual_seed(seed)
        y = (torch.rand(n, generator=gen) < pos_rate).double()
        y[0], y[-1] = 1.0, 0.0
        return y

    @staticmethod
    def separated_scores(n: int, seed: int, margin: float) -> torch.Tensor:
        """Distinct scores on a grid of step ``3 * margin``: every gap is 0 or >= 3 margin."""
        gen = torch.Generator().manual_seed(seed)
        return torch.randperm(n, generator=gen).double() * 3 * margin - n * margin

    @staticmethod
    def saturated_scores(labels: torch.Tensor, seed: int, flip: float = 0.3) -> torch.Tensor:
        """Scores of +-25 (tanh = +-1 in float64 to 1e-21) agreeing with labels except ``flip``."""
        gen = torch.Generator().manual_seed(seed)
        agree = torch.rand(labels.shape, generator=gen) > flip
        sign = torch.where(agree, 2 * labels - 1, 1 - 2 * labels)
        return 25.0 * sign.double()

    # ------------------------------------------------------------------ checks

    @staticmethod
    def assert_matches_reference(
        loss: Any, scores: Any, labels: Any, reference: float, atol: float = 1e-6
    ) -> None:
        """``loss.estimate`` equals the reference value and ``loss(...) = 1 - estimate``."""
        est = float(loss.estimate(scores, labels))
        assert est == pytest.approx(reference, abs=atol), (est, reference)
        assert float(loss(scores, labels)) == pytest.approx(1 - reference, abs=atol)

    @staticmethod
    def assert_matches_cvxpy(
        loss: Any,
        args: tuple,
        estimate_from: Callable[[dict[Any, np.ndarray]], float] | None = None,
        rtol: float = 1e-5,
    ) -> None:
        """lpdsl's solution is feasible in CVXPY's model and attains CVXPY's optimal value.

        ``problem_for(*args)`` is sent to CVXPY with ``parameter_values(*args)``; CVXPY solves
        it; then lpdsl's solution (``loss.solution(*args)``) is substituted into CVXPY's
        variables: its objective must equal CVXPY's optimum and its constraint violation must
        be tiny. ``estimate_from`` (CVXPY's variable values -> estimate) compares estimates.
        """
        from lpdsl.oracle import solve_with_cvxpy

        problem = loss.problem_for(*args)
        values = loss.parameter_values(*args)
        cp_prob, cp_vars = problem.to_cvxpy(*values)
        if cp_prob.is_dcp():
            cp_prob.solve()
            assert cp_prob.status == "optimal", cp_prob.status
            optimum = float(cp_prob.value)
            cvx_values = {v: np.asarray(cp_vars[v].value) for v in cp_vars}
        else:  # a ratio objective: CVXPY solves it by Dinkelbach's method in the oracle
            oracle = solve_with_cvxpy(problem, *values)
            assert oracle.status == "optimal", oracle.message
            optimum, cvx_values = float(oracle.value), oracle.solution
        ours = loss.solution(*args)
        assert set(ours) == set(cp_vars)
        for var, value in ours.items():
            cp_vars[var].value = value.detach().double().cpu().numpy()
        scale = 1.0 + abs(optimum)
        assert float(cp_prob.objective.value) == pytest.approx(optimum, abs=rtol * scale)
        for con in cp_prob.constraints:
            assert float(np.max(con.violation(), initial=0.0)) <= 1e-6 * scale, con
        if estimate_from is not None:
            est = float(loss.estimate(*args))
            assert est == pytest.approx(estimate_from(cvx_values), abs=1e-4)

    @staticmethod
    def assert_gradient_ascends(
        loss: Any, scores: torch.Tensor, labels: Any, step: float = 1e-3
    ) -> torch.Tensor:
        """The gradient of the estimate is finite, nonzero, and a small step along it helps."""
        s = scores.detach().clone().requires_grad_(True)
        est = loss.estimate(s, labels)
        est.backward()
        grad = s.grad
        assert grad is not None and torch.isfinite(grad).all()
        assert float(grad.abs().max()) > 0
        with torch.no_grad():
            moved = s + step * grad / grad.abs().max()
        assert float(loss.estimate(moved, labels)) > float(est.detach()) + 1e-9
        return grad

    @staticmethod
    def assert_float32(loss: Any, scores: torch.Tensor, labels: Any, atol: float) -> None:
        """Float32 inputs give float32 outputs and gradients, close to the float64 result."""
        s32 = scores.detach().float().requires_grad_(True)
        est32 = loss.estimate(s32, labels)
        assert est32.dtype == torch.float32
        est32.backward()
        assert s32.grad is not None and s32.grad.dtype == torch.float32
        assert torch.isfinite(s32.grad).all()
        est64 = loss.estimate(scores.detach().double(), labels)
        assert float(est32.detach()) == pytest.approx(float(est64), abs=atol)


@pytest.fixture
def tester() -> MetricTester:
    """The shared metric tester."""
    return MetricTester()
