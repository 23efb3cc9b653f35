"""The sparse operator's products (and row norms, gram diagonal) equal the dense ones for every
kind of pattern."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lpdsl.solvers import linalg
from lpdsl.sparse import SparseMatrix


def _matrix(kind: str, gen: torch.Generator) -> torch.Tensor:
    """A batch of 3 matrices of a pattern of the given kind (random values, fixed pattern)."""
    m, n = 12, 6
    mask = torch.zeros(m, n, dtype=torch.bool)
    if kind in ("one per row", "some rows empty"):
        mask[torch.arange(m), torch.randint(n, (m,), generator=gen)] = True
        if kind == "some rows empty":
            mask[[2, 7]] = False
    else:  # a light pattern with one dense row: the F-score model's arrowhead
        mask[torch.arange(m), torch.arange(m) % n] = True
        mask[torch.arange(m), (torch.arange(m) + 1) % n] = True
        mask[-1] = True
    return torch.randn(3, m, n, generator=gen, dtype=torch.float64) * mask


@pytest.mark.parametrize("kind", ["one per row", "some rows empty", "pairs"])
def test_products_equal_the_dense_ones(kind):
    gen = torch.Generator().manual_seed(0)
    A = _matrix(kind, gen)
    S = SparseMatrix.from_dense(A)
    op = linalg.SparseOperator(S.pattern, S.values)
    assert op.info.one_per_row == (kind == "one per row")
    y = torch.randn(3, A.shape[-1], generator=gen, dtype=torch.float64)
    r = torch.randn(3, A.shape[-2], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op.matvec(y), (A @ y.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(op.rmatvec(r), (A.mT @ r.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(op.row_sq_norms(), (A * A).sum(-1))
    w = torch.rand(3, A.shape[-2], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(op.gram_diagonal(w), (A * A * w.unsqueeze(-1)).sum(-2))
    shared = linalg.SparseOperator(S.pattern, S.values[:1])  # one A for every item
    torch.testing.assert_close(shared.matvec(y), (A[:1] @ y.unsqueeze(-1)).squeeze(-1))


def test_diagonal_recovery_is_exact_in_one_step():
    # rows with one nonzero each: A^T W A is diagonal and inverted exactly where a variable has
    # an active row (the shift only where it has none), so recover() takes a single step and
    # no refinement: x meets its active rows and the dual is stationary to rounding
    from lpdsl.diff.active import RECOVERY_SHIFT, recover

    gen = torch.Generator().manual_seed(4)
    A = _matrix("one per row", gen)
    S = SparseMatrix.from_dense(A)
    op = linalg.SparseOperator(S.pattern, S.values)
    active = torch.zeros(3, A.shape[-2], dtype=torch.float64)
    for item in range(3):  # one active row per variable that has rows
        for j in range(A.shape[-1]):
            rows = A[item, :, j].nonzero().squeeze(1)
            if rows.numel():
                active[item, rows[0]] = 1.0
    w = active * (A * A).sum(-1).reciprocal()  # unit-row weights, as the solver passes them
    solve = op.hessian_solver(w, RECOVERY_SHIFT)
    assert solve.exact
    b = torch.randn(3, A.shape[-2], generator=gen, dtype=torch.float64)
    used = (A.abs().sum(-2) > 0).double()  # variables with rows (others: no cost)
    c = -(A.mT @ (active * torch.rand(3, A.shape[-2], generator=gen).double()).unsqueeze(-1))
    c = c.squeeze(-1) * used
    x, v = recover(op, w, b, c, torch.zeros(3, A.shape[-1], dtype=torch.float64), solve)
    res = ((A @ x.unsqueeze(-1)).squeeze(-1) - b) * active
    assert res.abs().max() <= 1e-14
    torch.testing.assert_close((A.mT @ v.unsqueeze(-1)).squeeze(-1), -c, rtol=0, atol=1e-14)


def test_dense_batched_product_has_autograds_derivatives():
    # DenseOperator.matvec differentiates the batched product itself (its gradient in A laid
    # out as A, not as the transpose autograd forms): the same derivatives, first and second
    # order, and under torch.func.grad.
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(3, 7, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    op = linalg.DenseOperator(A)
    assert torch.autograd.gradcheck(lambda A, y: linalg.DenseOperator(A).matvec(y), (A, y))
    assert torch.autograd.gradgradcheck(lambda A, y: linalg.DenseOperator(A).matvec(y), (A, y))
    w = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    (op.matvec(y) * w).sum().backward()
    gA, gy = A.grad.clone(), y.grad.clone()
    assert torch.equal(gA, w.unsqueeze(-1) * y.detach().unsqueeze(1))
    torch.testing.assert_close(gy, (A.detach().mT @ w.unsqueeze(-1)).squeeze(-1))
    got = torch.func.grad(lambda A: (linalg.DenseOperator(A).matvec(y.detach()) * w).sum())(
        A.detach()
    )
    torch.testing.assert_close(got, gA)


def test_sparse_models_up_to_2048_variables_factorise_their_hessian():
    """Dense Cholesky of the assembled Hessian, not CG, up to n = 2048 (was 1024): a random
    sparse LP of 5,200 x 1,100 took 182 s by CG and 9.2 s by Cholesky (381 Newton steps);
    NMF at n = 1,600 118.7 s against 71.3 s."""
    g = torch.Generator().manual_seed(0)
    m, n, per_row = 3000, 1100, 6
    rows = torch.arange(m).repeat_interleave(per_row)
    cols = torch.stack([torch.randperm(n, generator=g)[:per_row] for _ in range(m)]).reshape(-1)
    A = torch.zeros(m, n, dtype=torch.float64)
    A[rows, cols] = torch.randn(m * per_row, generator=g, dtype=torch.float64)
    sm = SparseMatrix.from_dense(A)
    assert linalg.SparseOperator(sm.pattern, sm.values).kind == "pairs"


@given(
    st.lists(st.lists(st.sampled_from([0, 1, 2, 3]), max_size=3).map(tuple), min_size=1, max_size=4)
)
def test_broadcast_shapes_agrees_with_torch(shapes):
    # lpdsl's own (torch's took 10-18 us a call on every solve)
    from lpdsl.sparse import broadcast_shapes

    try:
        want = tuple(torch.broadcast_shapes(*shapes))
    except RuntimeError:
        with pytest.raises(RuntimeError, match="do not broadcast"):
            broadcast_shapes(*shapes)
        return
    assert broadcast_shapes(*shapes) == want
