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
        return linalg._CGSolve.apply(values, w, rr, op, 1e-2, linalg.CG_RTOL)

    vals = op.values.clone().requires_grad_(True)
    rr = r.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (vals, rr))
    linalg._block_info.cache_clear()


def test_inexact_newton_directions_leave_the_solution_exact(monkeypatch):
    """Newton directions on the CG path are solved to NEWTON_CG_RTOL (1e-4: a sparse LP of
    5,200 x 1,100 took the same 381 steps in half the time); the recovery and certificate
    must still solve to CG_RTOL, never reusing a Newton solver. With directions to 0.3 the
    result is still exact."""
    from scipy.optimize import linprog

    import lpdsl

    monkeypatch.setattr(linalg, "DENSE_HESSIAN_MAX_N", 0)
    monkeypatch.setattr(linalg, "BLOCK_SIZE", 4)  # an approximate preconditioner
    linalg._analyse.cache_clear()
    linalg._block_info.cache_clear()
    gen = torch.Generator().manual_seed(3)
    m, n = 60, 16
    A = torch.randn(m, n, generator=gen, dtype=torch.float64)
    A = A * (torch.rand(m, n, generator=gen) < 0.3)
    A = torch.cat([A, torch.eye(n, dtype=torch.float64), -torch.eye(n, dtype=torch.float64)])
    b = torch.cat([torch.rand(m, generator=gen, dtype=torch.float64), torch.ones(2 * n)])
    c = torch.randn(n, generator=gen, dtype=torch.float64)
    sm = SparseMatrix.from_dense(A)
    assert linalg.SparseOperator(sm.pattern, sm.values).kind == "cg"
    ref = linprog(c.numpy(), A_ub=A.numpy(), b_ub=b.numpy(), bounds=(None, None))
    for rtol in (linalg.NEWTON_CG_RTOL, 0.3):
        monkeypatch.setattr(linalg, "NEWTON_CG_RTOL", rtol)
        sol = lpdsl.solve(sm, b, c)
        assert int(sol.status) == lpdsl.Status.OPTIMAL
        assert abs(float(sol.value) - ref.fun) <= 1e-9 * max(1.0, abs(ref.fun))
    linalg._analyse.cache_clear()
    linalg._block_info.cache_clear()
