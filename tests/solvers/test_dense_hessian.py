"""The dense operator's Hessian: gathered rows, signed (update) weights, step-to-step updates."""

from __future__ import annotations

import pytest
import torch

from lpdsl.solvers import linalg


def _gram(A: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return A.transpose(1, 2) @ (w.unsqueeze(-1) * A)


@pytest.mark.parametrize("frac", [0.2, 0.9])  # gathered rows / every row
def test_gram_with_signed_weights(frac):
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 30, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 30, generator=gen, dtype=torch.float64)
    w = w * (torch.rand(3, 30, generator=gen) < frac)
    torch.testing.assert_close(linalg.DenseOperator(A).gram(w), _gram(A, w))
    shared = linalg.DenseOperator(A[:1])  # one A for every item
    torch.testing.assert_close(shared.gram(w), _gram(A[:1].expand(3, -1, -1), w))


def test_newton_solver_updates_the_last_gram():
    # a sequence of row masks as a Newton stage meets them: the updated gram matrix, and the
    # solves with it, equal those formed afresh
    gen = torch.Generator().manual_seed(1)
    A = torch.randn(4, 60, 8, generator=gen, dtype=torch.float64)
    op = linalg.DenseOperator(A)
    w = (torch.rand(4, 60, generator=gen) < 0.3).double()
    r = torch.randn(4, 8, generator=gen, dtype=torch.float64)
    solver, last = op.newton_solver(w, 1e-9, None)
    for _ in range(5):
        w = torch.where(torch.rand(4, 60, generator=gen) < 0.03, 1.0 - w, w)
        solver, last = op.newton_solver(w, 1e-9, last)
        torch.testing.assert_close(last[1], _gram(A, w), rtol=0, atol=1e-12)
        torch.testing.assert_close(solver(r), op.hessian_solver(w, 1e-9)(r), rtol=1e-9, atol=0)


def test_newton_solver_keeps_the_gradient_data_up_to_date():
    # with b, the same changed rows update h = A^T W b, and H y - h is the penalty's gradient
    # A^T relu(A y - b) where W marks the violated rows (docs/solver.md §6)
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(4, 60, 8, generator=gen, dtype=torch.float64)
    b = torch.randn(4, 60, generator=gen, dtype=torch.float64)
    op = linalg.DenseOperator(A)
    last, y, updated = None, torch.randn(4, 8, generator=gen, dtype=torch.float64), 0
    for _ in range(6):  # small moves: few rows change side, so H and h are updated
        y = y + 0.05 * torch.randn(4, 8, generator=gen, dtype=torch.float64)
        r = (A @ y.unsqueeze(-1)).squeeze(-1) - b
        w = (r > 0.0).double()
        if last is not None:
            updated += int(2 * (w != last[0]).sum(-1).max() <= (w != 0).sum(-1).max())
        _, last = op.newton_solver(w, 1e-9, last, b)
        _, H, h = last
        torch.testing.assert_close(h, (A * (w * b).unsqueeze(-1)).sum(1), rtol=0, atol=1e-12)
        grad = (H @ y.unsqueeze(-1)).squeeze(-1) - h
        torch.testing.assert_close(grad, op.rmatvec(r.clamp_min(0.0)), rtol=0, atol=1e-12)
    assert updated >= 3


@pytest.mark.parametrize("case", ["many changes", "float32"])
def test_newton_solver_forms_the_gram_afresh(case):
    # a wrong last gram matrix shows which path was taken: an update would carry it along
    gen = torch.Generator().manual_seed(2)
    dt = torch.float32 if case == "float32" else torch.float64
    A = torch.randn(2, 40, 5, generator=gen, dtype=dt)
    w0 = (torch.rand(2, 40, generator=gen) < 0.5).to(dt)
    w = 1.0 - w0 if case == "many changes" else w0.clone()
    w[:, 0] = 1.0 - w0[:, 0]  # float32: one row changed
    op = linalg.DenseOperator(A)
    _, (_, H, _) = op.newton_solver(w, 1e-6, (w0, _gram(A, w0) + 1.0, None))
    torch.testing.assert_close(H, _gram(A, w))
