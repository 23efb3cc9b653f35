"""The CG path's block-Jacobi preconditioner: blocks, padding, solves and gradients."""

from __future__ import annotations

import torch

from lpdsl.solvers import linalg
from lpdsl.sparse import SparseMatrix


def _operator(m: int, n: int, batch: int, seed: int) -> linalg.SparseOperator:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(m, n, generator=gen) < 0.3
    A = torch.randn(batch, m, n, generator=gen, dtype=torch.float64) * mask
    sm = SparseMatrix.from_dense(A)
    return linalg.SparseOperator(sm.pattern, sm.values)


def test_preconditioner_inverts_the_diagonal_blocks(monkeypatch):
    monkeypatch.setattr(linalg, "BLOCK_SIZE", 8)
    linalg._block_info.cache_clear()
    op = _operator(50, 37, 2, 0)  # 5 blocks, the last one padded
    w = (torch.rand(2, 50, generator=torch.Generator().manual_seed(1)) > 0.4).double()
    shift = 1e-3
    precond = linalg._block_jacobi(op, w, shift)
    assert precond is not None
    A = SparseMatrix(op.pattern, op.values).to_dense()
    H = A.transpose(1, 2) @ (w.unsqueeze(-1) * A) + shift * torch.eye(37, dtype=A.dtype)
    mask = torch.block_diag(*[torch.ones(8, 8)] * 4, torch.ones(5, 5)).bool()
    r = torch.randn(2, 37, dtype=torch.float64)
    expect = torch.linalg.solve(H * mask, r.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(precond(r), expect)
    u = linalg._cg(op, w, shift, r)
    torch.testing.assert_close(u, torch.linalg.solve(H, r.unsqueeze(-1)).squeeze(-1))
    linalg._block_info.cache_clear()


def test_cg_gradient_with_several_blocks(monkeypatch):
    monkeypatch.setattr(linalg, "BLOCK_SIZE", 4)
    linalg._block_info.cache_clear()
    op = _operator(30, 11, 1, 2)
    w = (torch.rand(1, 30, generator=torch.Generator().manual_seed(3)) > 0.3).double()
    r = torch.randn(1, 11, dtype=torch.float64)

    def f(values, rr):
        return linalg._CGSolve.apply(values, w, rr, op, 1e-2)

    vals = op.values.clone().requires_grad_(True)
    rr = r.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (vals, rr))
    linalg._block_info.cache_clear()
