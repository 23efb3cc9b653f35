"""MulticlassAUCLoss (paper §2.3, App. A.1): one-vs-all vs scikit-learn, AUCμ vs its definition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import lpdsl as lp
from lpdsl.metrics import MulticlassAUCLoss


def auc_mu_reference(labels: np.ndarray, scores: np.ndarray, cost: np.ndarray) -> float:
    """Kleiman & Page (2019): mean over class pairs a > b of the AUC of class b against class a
    scored by ``scores @ (cost[a] - cost[b])`` (written here from the paper's definition)."""
    k = scores.shape[1]
    values = []
    for a, b in itertools.combinations(range(k), 2):
        a, b = max(a, b), min(a, b)
        v = cost[a] - cost[b]
        sa, sb = scores[labels == a] @ v, scores[labels == b] @ v
        y = np.r_[np.zeros(len(sa)), np.ones(len(sb))]
        values.append(roc_auc_score(y, np.r_[sa, sb]))
    return float(np.mean(values))


MARGIN = 1e-3


def separated(n: int, k: int, seed: int, cost: np.ndarray | None = None):
    """Labels with every class present; continuous scores whose every gap (per class column
    and per AUCμ orientation score) exceeds MARGIN, asserted."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    cost = np.ones((k, k)) - np.eye(k) if cost is None else cost
    for _ in range(10_000):  # rejection sampling; deterministic for a seed
        scores = rng.random((n, k))
        projections = [scores[:, c] for c in range(k)]
        projections += [scores @ (cost[a] - cost[b]) for a in range(k) for b in range(a)]
        off = ~np.eye(n, dtype=bool)
        if all(np.abs(g[:, None] - g[None, :])[off].min() > 2 * MARGIN for g in projections):
            return torch.tensor(scores, dtype=torch.float64), torch.tensor(labels)
    raise AssertionError("no separated sample found")


@pytest.mark.parametrize(("n", "k", "seed"), [(12, 3, 0), (20, 4, 1)])
def test_ova_matches_sklearn_macro_ovr(tester, n, k, seed):
    s, y = separated(n, k, seed)
    ref = np.mean([roc_auc_score((y == c).numpy(), s[:, c].numpy()) for c in range(k)])
    tester.assert_matches_reference(MulticlassAUCLoss(k, margin=MARGIN), s, y, ref)


def test_ova_equals_sklearn_on_probabilities(tester):
    # sklearn's multi_class="ovr" wants rows on the simplex; give it such scores directly
    rng = np.random.default_rng(4)
    k, n = 3, 15
    y = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    p = rng.permutation(n * k).reshape(n, k) + 1.0
    p = p / p.sum(1, keepdims=True)
    ref = roc_auc_score(y, p, multi_class="ovr", average="macro")
    loss = MulticlassAUCLoss(k, margin=1e-5)
    gaps = np.abs(p[:, None, :] - p[None, :, :])
    assert gaps[gaps > 0].min() > 1e-5  # every gap exceeds the margin
    tester.assert_matches_reference(loss, torch.tensor(p), torch.tensor(y), ref)


def test_ova_is_per_column_auc_of_the_given_scores():
    """The docs said "ova" = sklearn's roc_auc_score(multi_class="ovr", average="macro"):
    sklearn refuses logits, and on their softmax the per-column ranking differs. What the
    estimate equals is the macro average of per-column one-vs-rest AUCs of the given scores
    (docs/metrics.md); this batch tells the two apart."""
    logits = torch.tensor(
        [[0.0, 5, 0], [1, 10, 10], [5, 0, 0], [0, 0, 5], [0, 6, 1], [2, 0, 7]],
        dtype=torch.float64,
    )
    labels = torch.tensor([1, 0, 0, 2, 1, 2])
    y, s = labels.numpy(), logits.numpy()
    per_column = np.mean([roc_auc_score(y == k, s[:, k]) for k in range(3)])
    softmax = torch.softmax(logits, 1).numpy()
    on_softmax = roc_auc_score(y, softmax, multi_class="ovr", average="macro")
    estimate = float(MulticlassAUCLoss(3).estimate(logits, labels))
    assert estimate == pytest.approx(per_column, abs=1e-6)
    assert abs(on_softmax - per_column) > 0.04
    with pytest.raises(ValueError):  # sklearn wants probabilities
        roc_auc_score(y, s, multi_class="ovr", average="macro")


@pytest.mark.parametrize("seed", [0, 1])
def test_mu_matches_definition(tester, seed):
    k = 3
    s, y = separated(15, k, seed)
    cost = np.ones((k, k)) - np.eye(k)
    ref = auc_mu_reference(y.numpy(), s.numpy(), cost)
    tester.assert_matches_reference(MulticlassAUCLoss(k, mode="mu", margin=MARGIN), s, y, ref)


def test_mu_with_a_cost_matrix(tester):
    k = 3
    cost = np.array([[0.0, 1.0, 4.0], [2.0, 0.0, 1.0], [1.0, 3.0, 0.0]])
    s, y = separated(15, k, 2, cost)
    ref = auc_mu_reference(y.numpy(), s.numpy(), cost)
    loss = MulticlassAUCLoss(k, mode="mu", cost=cost, margin=MARGIN)
    tester.assert_matches_reference(loss, s, y, ref)


@pytest.mark.parametrize("mode", ["ova", "mu"])
def test_value_agrees_with_cvxpy(tester, mode):
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(9, 3, generator=gen, dtype=torch.float64) * 0.02
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1])
    loss = MulticlassAUCLoss(3, mode=mode)

    def estimate_from(values):
        return float(np.mean([np.mean(np.maximum(0.01 - z, 0) / 0.01) for z in values.values()]))

    tester.assert_matches_cvxpy(loss, (s, y), estimate_from)


@pytest.mark.parametrize("mode", ["ova", "mu"])
def test_gradient_raises_the_estimate(tester, mode):
    gen = torch.Generator().manual_seed(1)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    s = torch.rand(6, 3, generator=gen, dtype=torch.float64) * 0.05
    tester.assert_gradient_ascends(MulticlassAUCLoss(3, mode=mode, margin=0.1), s, y)


def test_float32_and_cache(tester):
    loss = MulticlassAUCLoss(3)
    gen = torch.Generator().manual_seed(2)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 1, 1])
    s = torch.randn(8, 3, generator=gen, dtype=torch.float64) * 0.05
    tester.assert_float32(loss, s, y, atol=2e-3)
    misses = loss.cache_info().misses
    assert misses == 2  # blocks (2, 6) and (4, 4); a second float32 call compiled nothing new
    loss.estimate(s.flip(0), y.flip(0))
    assert loss.cache_info().misses == misses


def test_missing_class_is_skipped_and_single_class_degenerate():
    loss = MulticlassAUCLoss(3, mode="mu")
    s = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.8, 0.1, 0.1]], dtype=torch.float64)
    y = torch.tensor([0, 1, 0])  # class 2 absent: only the pair (1, 0) is defined
    assert float(loss.estimate(s, y)) == pytest.approx(1.0, abs=1e-6)
    single = s.clone().requires_grad_()
    out = loss(single, torch.tensor([1, 1, 1]))
    assert float(out.detach()) == pytest.approx(0.5)
    out.backward()
    assert torch.equal(single.grad, torch.zeros_like(s))
    assert "no block" in loss.degenerate_reason(s, torch.tensor([1, 1, 1]))
    assert loss.degenerate_reason(s, y) == ""
    with pytest.raises(lp.DSLError, match="no LP is solved for this batch"):
        loss.problem_for(s, torch.tensor([1, 1, 1]))


def test_boolean_labels_and_numpy_arguments():
    # bool labels crashed in labels.round(); numpy scalars were refused as arguments
    loss = MulticlassAUCLoss(np.int64(2), margin=np.float32(0.01))
    s = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], dtype=torch.float64)
    est = loss.estimate(s, torch.tensor([False, True, False, True]))
    assert float(est) == pytest.approx(float(loss.estimate(s, torch.tensor([0, 1, 0, 1]))))


def test_errors():
    with pytest.raises(lp.DSLError, match=r"Expected argument `mode` to be one of \['ova', 'mu'\]"):
        MulticlassAUCLoss(3, mode="ovo")
    with pytest.raises(lp.DSLError, match="`n_classes` to be an integer >= 2"):
        MulticlassAUCLoss(1)
    with pytest.raises(lp.DSLError, match=r"finite and nonnegative but got \[\[0\.0, -1\.0\]"):
        MulticlassAUCLoss(2, mode="mu", cost=np.array([[0.0, -1.0], [1.0, 0.0]]))
    with pytest.raises(lp.DSLError, match="zero diagonal"):
        MulticlassAUCLoss(2, mode="mu", cost=np.ones((2, 2)))
    with pytest.raises(lp.DSLError, match="mode='mu'"):
        MulticlassAUCLoss(2, cost=np.ones((2, 2)) - np.eye(2))
    # a cost matrix that makes every pair of a block tie (estimate 0, zero gradient) was
    # accepted: all zero, or two equal rows (no cost between two classes)
    with pytest.raises(lp.DSLError, match="`cost` to have a nonzero off-diagonal entry"):
        MulticlassAUCLoss(3, mode="mu", cost=np.zeros((3, 3)))
    same = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    with pytest.raises(lp.DSLError, match="no two equal rows but rows 0 and 1 are equal to 1e-12"):
        MulticlassAUCLoss(3, mode="mu", cost=same)
    assert MulticlassAUCLoss(2, mode="mu", cost=np.array([[0.0, 0.0], [1.0, 0.0]])) is not None
    with pytest.raises(lp.DSLError, match="`cost` to be an array of numbers but got 'abc'"):
        MulticlassAUCLoss(2, mode="mu", cost="abc")
    loss = MulticlassAUCLoss(3)
    with pytest.raises(lp.DSLError, match="Expected `labels` to be a tensor or array"):
        loss(torch.zeros(2, 3), None)
    with pytest.raises(lp.DSLError, match=r"shape \(n, 3\)"):
        loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(lp.DSLError, match=r"class indices in 0\.\.2"):
        loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    # one-hot labels, or a column of indices: the message said only which shape was expected
    with pytest.raises(lp.DSLError, match=r"got \(4, 3\); pass the class indices, e\.g\. `labels"):
        loss(torch.zeros(4, 3), torch.nn.functional.one_hot(torch.arange(4) % 3, 3))
    with pytest.raises(lp.DSLError, match=r"got \(4, 1\); pass one class index per sample"):
        loss(torch.zeros(4, 3), torch.zeros(4, 1))


def test_unsigned_numpy_labels_are_class_indices():
    # numpy uint16/32/64 labels raised torch's "lt_cpu" not implemented for 'UInt16'
    scores = torch.randn(12, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = np.arange(12) % 3
    ref = MulticlassAUCLoss(3).estimate(scores, labels.astype(np.int64))
    for dtype in (np.uint16, np.uint32, np.uint64):
        torch.testing.assert_close(MulticlassAUCLoss(3).estimate(scores, labels.astype(dtype)), ref)


def test_a_complex_or_meta_cost_matrix_is_refused_and_bfloat16_is_read() -> None:
    # numpy dropped a complex cost's imaginary part with a warning only; a meta one raised
    # torch's "Cannot copy out of meta tensor" (a reviewing helper's probes)
    cost = np.ones((3, 3)) - np.eye(3)
    with pytest.raises(lp.DSLError, match=r"`cost` to be real but got complex"):
        MulticlassAUCLoss(3, mode="mu", cost=cost + 5j)
    with pytest.raises(lp.DSLError, match=r"`cost` is a meta tensor"):
        MulticlassAUCLoss(3, mode="mu", cost=torch.ones(3, 3, device="meta"))
    MulticlassAUCLoss(3, mode="mu", cost=torch.tensor(cost, dtype=torch.bfloat16))


def test_mu_is_independent_of_the_cost_matrix_units_and_of_half_scores():
    # the orientation f(x)·(C[a] - C[b]) met an absolute margin: cost = 1e-4 (1 - I) gave 0.02
    # for 1 - I's 0.50, nearly equal rows slipped past the equal-rows check, and formed in
    # bfloat16 the orientation's rounding was the margin's size (a reviewing helper,
    # twentieth pass)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(60, 3, generator=g, dtype=torch.float64) * 3
    y = torch.arange(60) % 3
    base = float(MulticlassAUCLoss(3, mode="mu").estimate(s, y))
    for scale in (1e-4, 1e-2, 100.0):
        cost = scale * (np.ones((3, 3)) - np.eye(3))
        assert float(MulticlassAUCLoss(3, mode="mu", cost=cost).estimate(s, y)) == base
    with pytest.raises(lp.DSLError, match=r"rows 0 and 1 are equal to 1e-12"):
        MulticlassAUCLoss(3, mode="mu", cost=[[0, 0, 1], [0, 0, 1 + 1e-15], [1, 1, 0]])
    q = (torch.randn(200, 3, generator=g) * 4).to(torch.bfloat16)
    labels = torch.arange(200) % 3
    grads = []
    for scores in (q.clone(), q.double()):
        scores.requires_grad_()
        MulticlassAUCLoss(3, mode="mu")(scores, labels).backward()
        grads.append(scores.grad.double())
    # (bfloat16 gradients carry its rounding, 2^-8 relative; the error was 100 %)
    assert float((grads[0] - grads[1]).abs().max()) <= 1e-2 * float(grads[1].abs().max())


def test_repr_shows_a_cost_other_than_the_default():
    """Two AUCμ losses with different costs printed alike (a docs-walking helper)."""
    cost = [[0, 1, 2], [1, 0, 1], [2, 1, 0]]
    assert "cost=[[0.0, 1.0, 2.0]" in repr(MulticlassAUCLoss(3, mode="mu", cost=cost))
    assert "cost" not in repr(MulticlassAUCLoss(3, mode="mu"))
