"""The exact line search on the piecewise quadratic penalty (``lpdsl.solvers.linesearch``)."""

from __future__ import annotations

import pytest
import torch

from lpdsl.solvers import linesearch
from lpdsl.solvers.linesearch import exact_line_search


def _dphi(r, q, slope, lam):
    """phi'(lam) = sum_i q_i relu(r_i + lam q_i) + slope, directly."""
    return (q * (r + lam[:, None] * q).clamp_min(0.0)).sum(-1) + slope


def _random(k, m, gen, frac_violated=0.3, gap=0.0):
    """Residuals with ``frac_violated`` rows violated, the others at least ``gap`` inside."""
    r = torch.randn(k, m, generator=gen, dtype=torch.float64)
    r = torch.where(torch.rand(k, m, generator=gen) < frac_violated, r.abs(), -r.abs() - gap)
    q = torch.randn(k, m, generator=gen, dtype=torch.float64)
    # a descent direction: phi'(0) < 0
    slope = -(q * r.clamp_min(0.0)).sum(-1) - 1.0 - torch.rand(k, generator=gen)
    return r, q, slope


@pytest.mark.parametrize("k,m,gap", [(1, 40, 0.0), (7, 300, 0.0), (64, 400, 0.0), (64, 400, 5.0)])
def test_step_is_the_exact_minimiser(k, m, gap):
    gen = torch.Generator().manual_seed(k * m)
    r, q, slope = _random(k, m, gen, gap=gap)
    lam, unbounded = exact_line_search(r, q, slope)
    assert not unbounded.any()
    assert (lam > 0).all()
    d = _dphi(r, q, slope, lam)
    scale = (q * q).sum(-1) * lam + slope.abs()
    assert (d.abs() <= 1e-10 * scale).all(), d  # phi'(lam) = 0: the minimiser on lam >= 0


@pytest.mark.parametrize("first", [1, 4, 32, 399])
def test_partial_sort_agrees_with_the_full_sort(monkeypatch, first):
    # the topk of the `first` smallest breakpoints, and the full sort for the items whose root
    # lies beyond them, give bit for bit the step of one full sort (first=1 forces fallbacks;
    # first=4 and 1 also take the second round of first**2, as rows longer than first**3 do)
    r, q, slope = _random(64, 400, torch.Generator().manual_seed(first))
    monkeypatch.setattr(linesearch, "PARTIAL_MIN_ENTRIES", 10**9)
    full, _ = exact_line_search(r, q, slope)
    monkeypatch.setattr(linesearch, "PARTIAL_MIN_ENTRIES", 0)
    monkeypatch.setattr(linesearch, "PARTIAL_SORT", first)
    part, _ = exact_line_search(r, q, slope)
    assert torch.equal(part, full)


def test_first_piece_root_without_a_sort():
    # phi' = -(5 - 2 lam) + 2 on the first piece: root 1.5, before the breakpoints 2 and 3
    r = torch.tensor([[2.0, 3.0, -1.0]], dtype=torch.float64)
    q = torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64)
    lam, unbounded = exact_line_search(r, q, torch.tensor([2.0], dtype=torch.float64))
    assert torch.allclose(lam, torch.tensor([1.5], dtype=torch.float64)) and not unbounded.any()


def test_unbounded_ray_is_flagged():
    # no row ever becomes violated along d while c.d < 0: the penalty has no minimum
    r = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    q = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    lam, unbounded = exact_line_search(r, q, torch.tensor([-1.0], dtype=torch.float64))
    assert unbounded.all() and torch.isfinite(lam).all()
