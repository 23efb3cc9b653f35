"""``all_finite``: the cheap finiteness test behind every input check."""

from __future__ import annotations

import math

import pytest
import torch

from lpdsl.validation import all_finite


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_agrees_with_isfinite(dtype):
    big = torch.finfo(dtype).max
    cases = [
        torch.zeros(0, dtype=dtype),
        torch.randn(50).to(dtype),
        torch.full((4,), big, dtype=dtype),  # finite entries whose sum overflows
        torch.tensor([big, -big, big], dtype=dtype),
        torch.tensor([1.0, math.nan], dtype=dtype),
        torch.tensor([math.inf, -math.inf], dtype=dtype),  # a sum of NaN
        torch.tensor([1.0, -math.inf], dtype=dtype),
    ]
    for t in cases:
        assert all_finite(t) == bool(torch.isfinite(t).all()), t


def test_integers_graph_and_complex():
    assert all_finite(torch.arange(5)) and all_finite(torch.ones(3, dtype=torch.bool))
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    assert all_finite(x * 2) and x.grad is None
    assert not all_finite(torch.tensor([1 + 1j, complex(math.nan, 0)]))


def test_reversed_numpy_views_are_read_at_every_entry_point():
    """A view with negative strides (``s[::-1]``, ``np.flip``) is data like any other array:
    torch refuses to wrap it, and it was reported as "not an array of numbers" (a probing
    helper, 25th pass). Each entry point gives the answer of the same data copied."""
    import numpy as np

    import lpdsl as lp
    from lpdsl.metrics import AUCLoss, FBetaLoss

    scores = np.array([0.3, -0.2, 1.0, -1.0, 0.5, -0.7])[::-1]
    labels = np.array([1, 0, 1, 0, 0, 1])[::-1]
    for loss in (AUCLoss(), FBetaLoss()):
        got, want = loss(scores, labels), loss(scores.copy(), labels.copy())
        assert float(got) == float(want)
    s = lp.Parameter(4, name="s")
    x = lp.Variable(4, name="x", lb=0, ub=1)
    prob = lp.Problem(lp.Maximize(s @ x), [x.sum() <= 2])
    v = np.array([0.1, 0.5, -0.2, 0.9])[::-1]
    layer = lp.LPLayer(prob, parameters=[s], variables=[x])
    torch.testing.assert_close(layer(v), layer(v.copy()))
    A, b, c = prob.compile().standard_form(v)
    torch.testing.assert_close(b, prob.compile().standard_form(v.copy())[1])
    assert prob.to_cvxpy(v) is not None
    sol = lp.solve(np.eye(2)[::-1], np.ones(2)[::-1], np.ones(2)[::-1])
    torch.testing.assert_close(sol.value, lp.solve(np.eye(2), np.ones(2), np.ones(2)).value)
