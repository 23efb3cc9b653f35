"""NMF (paper App. A.3, Recht et al. 2012): anchors, reconstruction, memory at s = 64, errors."""

from __future__ import annotations

import resource

import numpy as np
import pytest
import torch

import lpdsl as lp
from lpdsl.metrics import NMF
from lpdsl.sparse import SparseMatrix


def factors(s: int, w: int, r: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F`` ``(s, r)``, ``W`` ``(r, w)`` (rows sum to 1) and the anchors, ``F``'s unit rows."""
    rng = np.random.default_rng(seed)
    W = rng.random((r, w))
    W /= W.sum(1, keepdims=True)
    F = rng.random((s, r)) ** 3
    F /= F.sum(1, keepdims=True)
    anchors = np.sort(rng.choice(s, r, replace=False))
    F[anchors] = np.eye(r)
    return F, W, anchors


def separable(s: int, w: int, r: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``V = F W`` with ``r`` anchor rows of ``V`` equal to the rows of ``W`` (rows sum to 1)."""
    F, W, anchors = factors(s, w, r, seed)
    return torch.tensor(F @ W), anchors


# (8, 32, 2, 0) needs the certificate's active-set completion: its optimum is degenerate and
# the recovered point violated weakly active rows by O(eps) (it ended MAX_ITER before).
@pytest.mark.parametrize(
    ("s", "w", "r", "seed"), [(8, 6, 3, 0), (10, 8, 2, 1), (8, 32, 2, 0), (16, 32, 2, 0)]
)
def test_recovers_anchors_and_factorises(s, w, r, seed):
    V, anchors = separable(s, w, r, seed)
    nmf = NMF(r)
    F, W = nmf(V)
    assert F.shape == (s, r) and W.shape == (r, w)
    C = nmf.solve_c(V)
    chosen = torch.topk(C.diagonal(), r).indices.sort().values.numpy()
    np.testing.assert_array_equal(chosen, anchors)
    torch.testing.assert_close(W, V[anchors], rtol=0, atol=0)
    torch.testing.assert_close(F @ W, V, rtol=0, atol=1e-6)
    assert float(C.diagonal().sum()) == pytest.approx(r, abs=1e-6)


def test_gradient_is_finite():
    V, _ = separable(8, 6, 3, 0)
    V = V.clone().requires_grad_()
    F, W = NMF(3)(V)
    (F.sum() + W.sum()).backward()
    assert V.grad is not None and torch.isfinite(V.grad).all()


@pytest.mark.parametrize(("s", "w", "r", "seed"), [(8, 6, 3, 0), (8, 32, 2, 0), (12, 10, 3, 2)])
def test_gradient_matches_finite_differences_along_separable_directions(s, w, r, seed):
    """``C``'s derivative along a direction that keeps ``V = F W`` separable (rows of ``F``
    and ``W`` moved within their simplices, the anchors' rows of ``F`` fixed): any other
    direction leaves the LP infeasible. The optimum is degenerate, and rows tight with zero
    duals fix coordinates of ``C`` its active rows leave free: their derivative was 0, and
    the first two cases 0.28 and 0.17 off finite differences (solver.md §7). The step is
    1e-4, not smaller: a central difference's error is the solves' error over ``h``, and these
    solves agree to ~1e-10 (tol is 1e-9), which at ``h = 1e-5`` missed ``rel=1e-6`` on an AMD
    CPU (3e-5 off) where an Intel one had passed; at 1e-4 both agree to 1e-10."""
    F, W, anchors = (torch.tensor(t) for t in factors(s, w, r, seed))
    g = torch.Generator().manual_seed(3)
    dW = torch.randn(W.shape, generator=g, dtype=W.dtype)
    dF = torch.randn(F.shape, generator=g, dtype=F.dtype)
    dW, dF = dW - dW.mean(1, keepdim=True), dF - dF.mean(1, keepdim=True)
    dF[anchors] = 0.0
    nmf = NMF(r)
    V = (F @ W).requires_grad_()
    weight = torch.randn(s, s, generator=g, dtype=V.dtype)
    (nmf.solve_c(V) * weight).sum().backward()
    h = 1e-4
    with torch.no_grad():
        up, down = (nmf.solve_c((F + e * dF) @ (W + e * dW)) for e in (h, -h))
    fd = float(((up - down) * weight).sum()) / (2 * h)
    assert float((V.grad * (dF @ W + F @ dW)).sum()) == pytest.approx(fd, rel=1e-6)


def test_s64_compiles_sparse_within_memory():
    """The paper's O(s^2) x O(s^2) matrix ran out of 11 GB at s > 20: here it is sparse."""
    V, _ = separable(64, 32, 6, 2)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nmf = NMF(6)
    problem = nmf.problem_for(V)
    compiled = problem.compile()
    A, b, c = compiled.standard_form(*nmf.parameter_values(V), layout="sparse")
    assert isinstance(A, SparseMatrix)
    m, n = A.pattern.shape
    assert n == 64 * 64 and A.pattern.nnz < 0.01 * m * n
    grown_gb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1e6
    assert grown_gb < 4.0  # dense A alone would be m * n * 8 bytes = 0.4 GB per copy
    assert nmf.cache_info().misses == 1


def test_problem_and_errors():
    V, _ = separable(6, 4, 2, 0)
    nmf = NMF(2)
    prob = nmf.problem_for(V)
    assert [p.name for p in prob.parameters()] == ["V"]
    assert [v.name for v in prob.variables()] == ["C"]
    with pytest.raises(lp.DSLError, match=r"Expected argument `rank` to be an integer >= 1"):
        NMF(0)
    with pytest.raises(lp.DSLError, match="rows of `V`"):
        NMF(2)(V * 2)
    with pytest.raises(lp.DSLError, match="nonnegative"):
        NMF(2)(V - 0.5)
    with pytest.raises(lp.DSLError, match="at most the number of rows"):
        NMF(7)(V)
    with pytest.raises(lp.DSLError, match="distinct"):
        NMF(2, p=[1.0, 1.0, 2.0])
    with pytest.raises(lp.DSLError, match="`p` to be an array of numbers but got 'abcd'"):
        NMF(2, p="abcd")
    with pytest.raises(lp.DSLError, match="`p` to be finite"):  # an internal name at the call
        NMF(2, p=[float("nan"), 1.0, 2.0, 3.0])
    with pytest.raises(lp.DSLError, match="`V` to be real"):  # the imaginary part was dropped
        NMF(2)(torch.eye(2, dtype=torch.complex128))


def test_list_input_keeps_float64():
    # Python floats became float32: V built exactly separable in float64 lost its
    # separability and the LP ended MAX_ITER
    rng = np.random.default_rng(7)
    W = rng.random((3, 6))
    W /= W.sum(1, keepdims=True)
    F = rng.random((8, 3))
    F /= F.sum(1, keepdims=True)
    F[[1, 3, 7]] = np.eye(3)
    V = F @ W
    F_hat, W_hat = NMF(3)(V.tolist())
    assert F_hat.dtype == torch.float64
    torch.testing.assert_close(F_hat @ W_hat, torch.tensor(V), atol=1e-9, rtol=0)


def test_failed_lp_with_strict_false_gives_nan_factors():
    """W held real rows of V (anchors picked by topk on a NaN diagonal) while F was NaN."""
    V = torch.softmax(
        torch.randn(8, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)), 1
    )
    # named after NMF (it said "LPLayer: ...") and saying what INFEASIBLE means here
    with pytest.raises(lp.SolverError, match=r"NMF: the LP .*INFEASIBLE.*no exact separable"):
        NMF(2)(V)
    F, W = NMF(2, strict=False)(V)
    assert F.shape == (8, 2) and W.shape == (2, 6)
    assert F.isnan().all() and W.isnan().all()


def _shuffled_separable(rng, s, w, r):
    W0 = rng.random((r, w))
    W0 /= W0.sum(1, keepdims=True)
    F0 = rng.random((s - r, r))
    F0 /= F0.sum(1, keepdims=True)
    return (np.vstack([np.eye(r), F0]) @ W0)[rng.permutation(s)], W0


@pytest.mark.parametrize("case", [36, 120])
def test_small_separable_inputs_a_helper_found_unsolved(case):
    """Cases 36 and 120 of a random sweep (s = 9) ended MAX_ITER even with max_iter = 10000:
    completion dropped a valid least-squares dual, the last eps > 0 stage skipped its
    certificate, and refinement did not settle where sigma^2 ~ the recovery shift (solver.md
    §5). HiGHS solves both."""
    rng = np.random.default_rng(0)
    for _ in range(case):
        s, w, r = int(rng.integers(8, 13)), int(rng.integers(3, 7)), int(rng.integers(2, 4))
        V, W0 = _shuffled_separable(rng, s, w, r)
    F, W = NMF(r)(torch.tensor(V))
    torch.testing.assert_close(F @ W, torch.tensor(V), atol=1e-8, rtol=0)
    anchors = {tuple(np.round(row, 10)) for row in W.numpy()}
    assert anchors == {tuple(np.round(row, 10)) for row in W0}


def test_rounding_noise_below_zero_is_accepted_and_factors_are_nonnegative():
    # NMF's factor F carries the solver's rounding (-8e-18 where C is 0), and F @ W, separable
    # by construction, was refused as "not nonnegative" (examples/nmf_activations.py crashed
    # on its second image: a reviewing helper's run); a real negative entry is named
    V = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0.5, 0.5, 0], [0.2, 0.8, 0]], dtype=torch.float64)
    F, W = NMF(2)(V)
    assert bool((F >= 0).all())
    P = F @ W
    P = (P - 1e-17 * (P == 0)) / P.sum(1, keepdim=True)
    assert bool((P < 0).any())
    F2, W2 = NMF(2)(P)
    torch.testing.assert_close(F2 @ W2, P.clamp_min(0.0), rtol=0, atol=1e-9)
    V[3, 2] = -1e-3
    with pytest.raises(lp.DSLError, match=r"nonnegative but V\[3, 2\] = -0.001"):
        NMF(2)(V)


def test_an_optimum_off_a_vertex_is_not_returned_as_anchors():
    # a duplicated anchor row and weights p 1e-10 apart: diag(C) = (0.80, 0.20, ...), and
    # F @ W was 0.1 off V without a word (a reviewing helper's probe); zero rows and the
    # failed factors' graph
    W0 = np.array([[0.5, 0.25, 0.25, 0.0], [0.0, 0.5, 0.0, 0.5], [0.125, 0.125, 0.25, 0.5]])
    F0 = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0], [0.25, 0.25, 0.5]])
    V = torch.tensor(F0 @ W0)
    p = np.arange(6.0) + 1.0
    F, W = NMF(3, p=p)(V)
    torch.testing.assert_close(F @ W, V, rtol=0, atol=1e-9)
    p[1] = 1.0 + 1e-10
    with pytest.raises(lp.SolverError, match="not a vertex: diag"):
        NMF(3, p=p)(V)
    Vg = V.clone().requires_grad_()
    F, W = NMF(3, p=p, strict=False)(Vg)
    assert bool(F.isnan().all()) and bool(W.isnan().all())
    (F.nansum() + W.nansum()).backward()  # attached: torch's "does not require grad" before
    assert bool((Vg.grad == 0).all())
    with pytest.raises(lp.DSLError, match="row 1 is all zero; drop zero rows"):
        NMF(2)(torch.tensor([[0.5, 0.5], [0.0, 0.0], [1.0, 0.0]], dtype=torch.float64))


def test_an_empty_v_is_named() -> None:
    # V of shape (10, 0) raised torch's "amin(): Expected reduction dim" (a reviewing helper)
    for shape in ((10, 0), (0, 6)):
        with pytest.raises(lp.DSLError, match=r"`V` to be a non-empty 2-D \(s, w\) matrix"):
            NMF(1)(torch.zeros(shape))


def test_subnormal_entries_of_v_are_zero():
    """A column of V around 1e-310 (rows summing to 1) made LP rows the solver cannot scale to
    unit norm, and NMF was refused with "row 82 of A"; such entries are 0 to a row summing to
    1 (a verifying helper, 25th pass)."""
    F, W, anchors = factors(8, 6, 3, 0)
    W[:, 4] = 1e-310 * (1.0 + np.arange(3))
    W /= W.sum(1, keepdims=True)
    V = torch.tensor(F @ W)
    assert bool(((V[:, 4] > 0) & (V[:, 4] < 2.2e-308)).all())
    F2, W2 = NMF(3)(V)
    torch.testing.assert_close(F2 @ W2, V, rtol=0, atol=1e-6)
    # below float32's range with compute_dtype=float32: refused as "rescale the inputs"
    W[:, 4] = 1e-50 * (1.0 + np.arange(3))
    V = torch.tensor(F @ (W / W.sum(1, keepdims=True)))
    F2, W2 = NMF(3, compute_dtype=torch.float32)(V)
    torch.testing.assert_close(F2 @ W2, V, rtol=0, atol=1e-4)  # (float32 arithmetic)
