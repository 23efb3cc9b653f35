"""The exact line search on the piecewise quadratic penalty (``lpdsl.solvers.linesearch``)."""

from __future__ import annotations

import pytest
import torch

import lpdsl as lp
from lpdsl.solvers import linesearch
from lpdsl.solvers.linesearch import line_search


def _search(r, q, slope):
    """``line_search`` with ``unbounded`` as a tensor (``None`` means none is unbounded)."""
    lam, unbounded = line_search(r, q, slope)
    return lam, torch.zeros_like(lam, dtype=torch.bool) if unbounded is None else unbounded


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
    lam, unbounded = _search(r, q, slope)
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
    full, _ = _search(r, q, slope)
    monkeypatch.setattr(linesearch, "PARTIAL_MIN_ENTRIES", 0)
    monkeypatch.setattr(linesearch, "PARTIAL_SORT", first)
    part, _ = _search(r, q, slope)
    assert torch.equal(part, full)


def test_first_piece_root_without_a_sort():
    # phi' = -(5 - 2 lam) + 2 on the first piece: root 1.5, before the breakpoints 2 and 3
    r = torch.tensor([[2.0, 3.0, -1.0]], dtype=torch.float64)
    q = torch.tensor([[-1.0, -1.0, -1.0]], dtype=torch.float64)
    lam, unbounded = _search(r, q, torch.tensor([2.0], dtype=torch.float64))
    assert torch.allclose(lam, torch.tensor([1.5], dtype=torch.float64)) and not unbounded.any()


def test_unbounded_ray_is_flagged():
    # no row ever becomes violated along d while c.d < 0: the penalty has no minimum
    r = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    q = torch.tensor([[-1.0, 0.0]], dtype=torch.float64)
    lam, unbounded = _search(r, q, torch.tensor([-1.0], dtype=torch.float64))
    assert unbounded.all() and torch.isfinite(lam).all()


def test_separable_search_is_one_search_per_variable():
    # variables 0..2 own rows {0, 3}, {1}, {2, 4, 5}; variable 3 owns none (padding only)
    gen = torch.Generator().manual_seed(5)
    r, q, _ = _random(4, 6, gen)
    col_rows = torch.tensor([[0, 3, 6], [1, 6, 6], [2, 4, 5], [6, 6, 6]])
    slope = -torch.rand(4, 4, generator=gen, dtype=torch.float64) - 0.5
    slope[:, 3] = 0.0  # an unconstrained variable with no cost: no step
    q[:, :3] = q[:, :3].abs()  # each constrained variable meets a row: phi is bounded below
    lam, unbounded = linesearch.separable_line_search(r, q, slope, col_rows)
    assert unbounded is None or not unbounded.any()
    for j, rows in enumerate(([0, 3], [1], [2, 4, 5])):
        one, _ = _search(r[:, rows], q[:, rows], slope[:, j])
        assert torch.equal(lam[:, j], one)
        d = _dphi(r[:, rows], q[:, rows], slope[:, j], one)  # 0, or >= 0 at lam = 0
        assert ((d.abs() <= 1e-12) | ((one == 0.0) & (d >= 0.0))).all()
    assert (lam[:, 3] == 0.0).all()


def test_separable_search_flags_an_unbounded_variable():
    # variable 1's only row is satisfied and moves away (q < 0) while its cost decreases
    r = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    q = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    slope = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    lam, unbounded = linesearch.separable_line_search(r, q, slope, torch.tensor([[0], [1]]))
    assert unbounded is not None and unbounded.tolist() == [True]
    assert lam[0, 0] == 0.5 and torch.isfinite(lam).all()


def test_root_of_a_flat_piece_stays_inside_it():
    # rows 0 and 2 leave at 0.786 and 1.214, row 1 enters at 1.313: phi' = 0 between 1.214
    # and 1.313 up to rounding (alpha -1.1e-16, beta 5.6e-17), whose root -alpha/beta = 2.0
    # once came out past the piece and left row 1 violated
    r = torch.tensor([[0.5281785693204444, -0.8822528854216544, 0.8157714736675757]])
    q = torch.tensor([[-0.6719750211580225, 0.6719750211580227, -0.6719750211580227]])
    r, q = r.double(), q.double()
    lam, _ = _search(r, q, torch.zeros(1, dtype=torch.float64))
    assert 1.2139 < float(lam) <= float(-r[0, 1] / q[0, 1])
    assert float((r + lam * q).max()) <= 1e-15


def test_a_step_through_far_breakpoints_is_not_cut_to_zero():
    # from a feasible y = 0 with residuals ~1e23, phi' at the first breakpoint is a sum that
    # cancels to ~1e7 against a true value of `slope`: the step came out 0, the iterate never
    # moved, and max x0 + x1, x0 + 2 x1 <= B, 2 x0 + x1 <= B, x >= 0 ended MAX_ITER at x = 0
    # (B = 2.6e23, 2.7e22, 3.0e30: a verifying helper's probe, 21st pass)
    r = torch.tensor([[-2.6093596697131887e23, -2.6093596697131887e23, 0.0, 0.0]]).double()
    q = torch.tensor([[3.0, 3.0, -1.0, -1.0]]).double() / 5**0.5
    lam, unbounded = _search(r, q, torch.tensor([-0.01]).double())
    assert not bool(unbounded.any()) and float(lam) >= float(-r[0, 0] / q[0, 0]) * (1 - 1e-12)
    A = torch.tensor([[1.0, 2.0], [2.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    c = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    for B in (2.6093596697131887e23, 2.7210543016767335e22, 2.999999894026671e30):
        sol = lp.solve(A, torch.tensor([B, B, 0.0, 0.0], dtype=torch.float64), c)
        assert int(sol.status) == int(lp.Status.OPTIMAL)
        assert torch.allclose(sol.x, torch.full((2,), B / 3, dtype=torch.float64), rtol=1e-12)
