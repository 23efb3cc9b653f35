"""The paper's LP families (F-score §2.4, AUC eq. 2) against HiGHS, dense and sparse."""

from __future__ import annotations

import itertools

import pytest
import torch
from families import auc_lp, fscore_lp, fscore_pattern, fscore_sparse, to_sparse
from solver_helpers import assert_rel_close, highs_values

import lpdsl
from lpdsl import Status
from lpdsl.solvers.linalg import SparseOperator


@pytest.mark.parametrize("sparse", [False, True])
def test_fscore_matches_highs(sparse, gen):
    n = 24
    s = 2 * torch.randn(5, n, generator=gen, dtype=torch.float64)
    y = (torch.rand(5, n, generator=gen) < 0.4).double()
    y[:, 0] = 1.0
    A, b, c = fscore_lp(s, y)
    AA = to_sparse(A, fscore_pattern(n)) if sparse else A
    sol = lpdsl.solve(AA, b, c)
    assert (sol.status == Status.OPTIMAL).all()
    assert_rel_close(sol.value, highs_values(A, b, c), 1e-9)
    if sparse:  # the arrowhead Hessian: bordered diagonal plus the normalisation rows
        assert SparseOperator(AA.pattern, AA.values).kind == "arrow"


@pytest.mark.parametrize("p,q", [(4, 14), (8, 8)])
def test_auc_matches_highs_and_is_diagonal(p, q, gen):
    pos = torch.randn(3, p, generator=gen, dtype=torch.float64) + 0.5
    neg = torch.randn(3, q, generator=gen, dtype=torch.float64)
    A, b, c = auc_lp(pos, neg)
    sm = to_sparse(A[0])
    assert SparseOperator(sm.pattern, sm.values).kind == "diagonal"
    for AA in (A, sm):
        sol = lpdsl.solve(AA, b, c)
        assert (sol.status == Status.OPTIMAL).all()
        assert_rel_close(sol.value, highs_values(A[0], b, c), 1e-9)
        # z_ij = relu(margin - (f_i - f_j)) in closed form
        gap = (pos[:, :, None] - neg[:, None, :]).reshape(3, -1)
        assert torch.allclose(sol.x, torch.relu(0.01 - gap), atol=1e-10)


def test_fscore_sparse_builder_equals_dense_builder(gen):
    n = 7
    s = torch.randn(2, n, generator=gen, dtype=torch.float64)
    y = (torch.rand(2, n, generator=gen) < 0.5).double()
    A, b, c = fscore_lp(s, y)
    sm, b2, c2 = fscore_sparse(s, y, fscore_pattern(n))
    assert torch.allclose(sm.to_dense(), A, rtol=0, atol=1e-15)
    assert torch.equal(b2, b) and torch.equal(c2, c)


def test_large_fscore_keeps_the_arrow_solver(gen):
    """n above the dense-Hessian limit: still the O(n) arrow solve, not CG (a loss over a
    batch of 1024 samples took 1.35 s per call through CG, 42 ms through the arrow)."""
    from lpdsl.solvers import linalg

    n = linalg.DENSE_HESSIAN_MAX_N + 50
    s = torch.randn(1, n, generator=gen, dtype=torch.float64)
    y = (torch.rand(1, n, generator=gen) < 0.4).double()
    y[:, 0] = 1.0
    A, b, c = fscore_lp(s, y)
    sm = to_sparse(A[0], fscore_pattern(n))
    op = SparseOperator(sm.pattern, sm.values.unsqueeze(0))
    assert op.kind == "arrow" and op.info.k1 is None  # no dense pair lists at this size
    sol = lpdsl.solve(sm, b, c)
    assert (sol.status == Status.OPTIMAL).all()
    assert_rel_close(sol.value, highs_values(A, b, c), 1e-9)


def _fscore_instance(seed: int, n: int = 64, batch: int = 1):
    """The benchmark's F-score LPs: ``batch`` of them over ``n`` samples, in sparse form."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, n, generator=g, dtype=torch.float64)
    y = (torch.rand(batch, n, generator=g) < 0.4).double()
    y[:, 0] = 1.0
    return fscore_sparse(s, y, fscore_pattern(n))


def test_completion_never_repeats_a_recovery(monkeypatch):
    # The certificate's completion (docs/solver.md §5) recovers an item again only when its
    # active set grew: with the same set and a fresh factor the recovery would repeat itself.
    # On this F-score batch (the benchmark's) it used to redo 11 of 18 recoveries in vain.
    import lpdsl.solvers.certificate as certificate

    seen, repeats = set(), []
    real = certificate.recover

    def recover(op, weights, b, c, y, solve=None):
        if solve is None:  # a fresh factor: the result is fixed by (y, active set)
            for yi, wi in zip(y, weights > 0, strict=True):
                key = (yi.numpy().tobytes(), wi.numpy().tobytes())
                if key in seen:
                    repeats.append(key)
                seen.add(key)
        return real(op, weights, b, c, y, solve)

    monkeypatch.setattr(certificate, "recover", recover)
    sol = lpdsl.solve(*_fscore_instance(0, batch=64))
    assert (sol.status == Status.OPTIMAL).all()
    assert not repeats


def test_first_step_weights_the_rows_through_the_origin(monkeypatch):
    # y = 0 lies on every F-score row with b = 0 and violates only the normalisation row; with
    # those rows at weight 0 the Hessian had rank 1 and the line search cut the huge step at
    # lam ~ 2e-10 (docs/solver.md §2). Weighting r >= 0 on a stage's first step gives a real step.
    import lpdsl.solvers.newton as newton

    steps = []
    real = newton.line_search

    def line_search(r, q, slope, skip=None):
        lam, unbounded = real(r, q, slope, skip)
        steps.append((int((r > 0).sum()), float(lam.min())))
        return lam, unbounded

    monkeypatch.setattr(newton, "line_search", line_search)
    sol = lpdsl.solve(*_fscore_instance(0))
    assert bool(sol.optimal.all())
    violated_at_start, first_lam = steps[0]
    assert violated_at_start == 1 and first_lam > 1e-3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_epsilon_falls_faster_after_a_one_step_stage(monkeypatch, dtype):
    # docs/solver.md §3: eps / 100 after a stage of at most two Newton steps, else eps / 10;
    # float32 arithmetic always divides by 10 (the larger factor cost it certificates).
    import lpdsl.solvers.newton as newton

    stages = []
    real = newton._stage

    def stage(P, y, eps, *args, **kwargs):
        out = real(P, y, eps, *args, **kwargs)
        stages.append((float(eps[0]), int(out[1][0])))
        return out

    monkeypatch.setattr(newton, "_stage", stage)
    total = 0
    for seed in range(8):
        stages.clear()
        sol = lpdsl.solve(*_fscore_instance(seed), compute_dtype=dtype)
        assert bool(sol.optimal.all())
        total += int(sol.iterations)
        fast = newton.EPS_FACTOR_FAST if dtype == torch.float64 else newton.EPS_FACTOR
        for (e0, its), (e1, _) in itertools.pairwise(stages):
            factor = fast if its <= newton.EPS_FAST_STEPS else newton.EPS_FACTOR
            assert e1 == pytest.approx(e0 / factor, rel=1e-6)
    if dtype == torch.float64:
        # 90 Newton steps over these eight LPs with eps / 10 throughout and an unweighted
        # first step; 72 with both (deterministic in float64 on CPU)
        assert total <= 80
