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
