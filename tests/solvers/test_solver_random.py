"""Random dense LPs against scipy HiGHS; batching, broadcasting, dtypes, structure paths."""

from __future__ import annotations

import pytest
import torch
from families import fscore_lp, fscore_pattern, fscore_sparse, random_lp, to_sparse
from solver_helpers import assert_rel_close, highs_values

import lpdsl
from lpdsl import Status
from lpdsl.solvers import linalg
from lpdsl.solvers.linalg import SparseOperator


@pytest.mark.parametrize("m,n", [(200, 20), (40, 30), (30, 30)])
def test_random_dense_matches_highs_float64(m, n, gen):
    A, b, c = random_lp(m, n, (6,), generator=gen)
    sol = lpdsl.solve(A, b, c)
    assert (sol.status == Status.OPTIMAL).all(), sol.status
    assert_rel_close(sol.value, highs_values(A, b, c), 1e-9)
    # the certificate's ingredients hold on the returned solution
    assert float((A @ sol.x.unsqueeze(-1)).squeeze(-1).sub(b).max()) <= 1e-7
    assert float(sol.dual.min()) >= 0.0
    stat = (A.transpose(-1, -2) @ sol.dual.unsqueeze(-1)).squeeze(-1) + c
    assert float(stat.abs().max()) <= 1e-7
    assert torch.allclose((c * sol.x).sum(-1), sol.value, rtol=1e-12, atol=1e-12)


def test_float32_inputs_give_float32_results_to_1e4(gen):
    A, b, c = random_lp(120, 20, (4,), generator=gen)
    sol = lpdsl.solve(A.float(), b.float(), c.float())
    assert sol.x.dtype == torch.float32 and sol.value.dtype == torch.float32
    assert (sol.status == Status.OPTIMAL).all()
    # the float32 data define a slightly different LP: compare against that LP
    ref = highs_values(A.float().double(), b.float().double(), c.float().double())
    assert_rel_close(sol.value, ref, 1e-4)


@pytest.mark.parametrize("family", ["random", "fscore"])
def test_float32_arithmetic_certifies_to_1e4(gen, family):
    """compute_dtype=float32 (the GPU-speed option): certified, within 1e-4 of HiGHS."""
    if family == "random":
        A, b, c = random_lp(200, 20, (6,), generator=gen)
    else:
        s = torch.randn(6, 32, generator=gen, dtype=torch.float64)
        y = (torch.rand(6, 32, generator=gen) < 0.4).double()
        y[:, 0] = 1.0
        A, b, c = fscore_lp(s, y)
    A, b, c = A.float(), b.float(), c.float()
    sol = lpdsl.solve(to_sparse(A) if family == "fscore" else A, b, c, compute_dtype=torch.float32)
    assert sol.y.dtype == torch.float32  # the iterate is kept in the arithmetic's dtype
    assert (sol.status == Status.OPTIMAL).all()
    assert_rel_close(sol.value, highs_values(A.double(), b.double(), c.double()), 1e-4)
    again = lpdsl.solve(A, b, c, compute_dtype=torch.float64)  # the default, explicitly
    assert again.y.dtype == torch.float64
    assert_rel_close(sol.value, again.value.double(), 1e-4)


def _fscore_float32(n: int, batch: int, seed: int):
    """A batch of float32 F-score LPs on the compiler's pattern, and HiGHS's values for them."""
    gen = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, n, generator=gen, dtype=torch.float64)
    y = (torch.rand(batch, n, generator=gen) < 0.4).double()
    y[:, 0] = 1.0
    sm, b, c = fscore_sparse(s.float(), y.float(), fscore_pattern(n))
    A, _, _ = fscore_lp(s.float().double(), y)
    return sm, b, c, highs_values(A, b.double(), c.double())


def test_float32_arrow_solver_survives_a_cancelling_schur_complement():
    """F-score n = 256 in float32 arithmetic through the arrow solver: the Schur complement of
    its border column, ~100 - ~100, came out negative and the fallback shift, relative to the
    complement itself, was too small: a LinAlgError on 4 of 4 seeds tried. Now certified."""
    sm, b, c, ref = _fscore_float32(256, 4, seed=0)
    assert SparseOperator(sm.pattern, sm.values).kind == "arrow"
    sol = lpdsl.solve(sm, b, c, compute_dtype=torch.float32, rho=1e-9)  # (float32's is 1e-7)
    assert (sol.status == Status.OPTIMAL).all()
    assert_rel_close(sol.value, ref, 1e-4)


@pytest.mark.parametrize("n", [192, 256, 512])
def test_float32_arrow_solver_on_saturated_scores(n):
    """Saturated scores (|s| 8..30: phi = +-1 to float32 rounding) make the Schur complement
    ~1e-7 of its border's ~100, below float32's rounding: each such single LP ended MAX_ITER
    from n = 192 on, its recovered point off its rows by 0.26 at every eps (a reviewing
    helper's probe: FBetaLoss(compute_dtype=torch.float32) failed 6 of 6 batches at n =
    256). The arrow solver now factorises in float64."""
    gen = torch.Generator().manual_seed(n)
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).double()
    y[0] = 1.0
    sign = torch.where(torch.rand(n, generator=gen, dtype=torch.float64) < 0.9, y, 1 - y)
    s = (2 * sign - 1) * (8 + 22 * torch.rand(n, generator=gen, dtype=torch.float64))
    sm, b, c = fscore_sparse(s.float(), y.float(), fscore_pattern(n))
    assert SparseOperator(sm.pattern, sm.values).kind == "arrow"
    sol = lpdsl.solve(sm, b, c, compute_dtype=torch.float32)
    assert int(sol.status) == Status.OPTIMAL
    again = lpdsl.solve(sm, b, c)  # float64 arithmetic on the same float32 data
    assert_rel_close(sol.value, again.value.double(), 1e-5)


def test_float32_default_shift_is_above_rounding():
    """In float32 arithmetic the Hessian's shift defaults to 1e-7 (~ machine epsilon): at 1e-9
    a batch of 64 F-score LPs left 10 items MAX_ITER (their Newton steps along the
    Charnes-Cooper scale were rounding noise); all are certified now."""
    sm, b, c, ref = _fscore_float32(64, 64, seed=1)
    sol = lpdsl.solve(sm, b, c, compute_dtype=torch.float32)
    assert (sol.status == Status.OPTIMAL).all(), int((sol.status != Status.OPTIMAL).sum())
    assert_rel_close(sol.value, ref, 1e-4)


def test_cholesky_fallback_shift_follows_the_given_scale():
    # a 1x1 difference of two terms of size 100 that rounding made negative
    C = torch.tensor([[[-3e-5]]], dtype=torch.float32)
    with pytest.raises(torch.linalg.LinAlgError):
        linalg.cholesky(C)  # shifted by 1e-5 of max(|C|, 1): still negative
    L = linalg.cholesky(C, torch.tensor([100.0]))  # shifted by 1e-5 of the terms' size
    assert float(L[0, 0, 0]) > 0


def test_batched_equals_per_item(gen):
    A, b, c = random_lp(60, 10, (5,), generator=gen)
    batch = lpdsl.solve(A, b, c)
    for i in range(5):
        one = lpdsl.solve(A[i], b[i], c[i])
        assert one.value.shape == ()
        assert torch.allclose(batch.value[i], one.value, rtol=1e-10)
        assert torch.allclose(batch.x[i], one.x, atol=1e-8)


def test_broadcasting_shared_A_and_nested_batch(gen):
    A, b, c = random_lp(50, 8, (), generator=gen)
    bb = b + 0.1 * torch.rand(2, 3, 50, generator=gen, dtype=torch.float64)
    sol = lpdsl.solve(A, bb, c)
    assert sol.x.shape == (2, 3, 8) and sol.dual.shape == (2, 3, 50)
    assert sol.value.shape == (2, 3) and sol.status.shape == (2, 3)
    ref = highs_values(A, bb, c.expand(2, 3, 8))
    assert_rel_close(sol.value, ref, 1e-9)


def _sparse_random_lp(m, n, batch, density, gen):
    A = torch.randn(batch, m, n, generator=gen, dtype=torch.float64)
    A = A * (torch.rand(A.shape, generator=gen, dtype=torch.float64) < density)
    x0 = torch.randn(batch, n, 1, generator=gen, dtype=torch.float64)
    b = (A @ x0).squeeze(-1) + torch.rand(batch, m, generator=gen, dtype=torch.float64)
    v0 = torch.rand(batch, m, 1, generator=gen, dtype=torch.float64)
    c = -(A.transpose(-1, -2) @ v0).squeeze(-1)
    return A, b, c


def test_sparse_matrix_input_equals_dense(gen):
    A, b, c = _sparse_random_lp(80, 12, 3, 0.3, gen)
    dense = lpdsl.solve(A, b, c)
    sparse = lpdsl.solve(to_sparse(A), b, c)
    ok = dense.status == Status.OPTIMAL
    assert (sparse.status == dense.status).all()
    assert torch.allclose(sparse.value[ok], dense.value[ok], rtol=1e-10)


def test_matrix_free_cg_path(monkeypatch, gen):
    """Force the conjugate-gradient path and compare with the Cholesky path."""
    from lpdsl.solvers import linalg

    A, b, c = _sparse_random_lp(60, 15, 3, 0.5, gen)
    ref = lpdsl.solve(to_sparse(A), b, c)
    monkeypatch.setattr(linalg, "DENSE_HESSIAN_MAX_N", 0)
    sm = to_sparse(A)
    assert linalg.SparseOperator(sm.pattern, sm.values).kind == "cg"
    sol = lpdsl.solve(sm, b, c)
    assert (sol.status == ref.status).all()
    ok = ref.status == Status.OPTIMAL
    assert_rel_close(sol.value[ok], highs_values(A, b, c)[ok], 1e-8)
