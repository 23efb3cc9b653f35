"""Multiclass AUC as linear programs (paper §2.3 and App. A.1; Kleiman & Page 2019).

Both modes are direct sums of binary AUC LPs (paper eq. 2), one block per class or per class
pair, with the estimate of eq. (3) averaged over the blocks:

* ``mode="ova"`` (App. A.1, eq. 8): block ``k`` ranks the class-``k`` samples above all
  others by their score for class ``k``; the estimate is the macro average over classes of
  the one-vs-rest AUC of the given scores' column ``k``: ``mean_k roc_auc_score(labels == k,
  scores[:, k])`` when every gap exceeds the margin. That is sklearn's
  ``roc_auc_score(multi_class="ovr", average="macro")`` only for scores that are
  probabilities (sklearn refuses others); on ``softmax(logits)`` the per-column ranking, and
  so the value, can differ from the logits'.
* ``mode="mu"`` (§2.3 eq. 4, App. A.1 eq. 9): AUCμ. For classes ``a > b`` and a cost
  (partition) matrix ``C`` (``C[k, l]``: cost of predicting ``k`` for true class ``l``; zero
  diagonal), the block ranks the class-``b`` samples above the class-``a`` samples by the
  orientation score ``f(x) · (C[a] - C[b])``, scaled to ``max|C[a] - C[b]| = 1``; the
  estimate is the mean over class pairs.
  With the default ``C = 1 - I`` the orientation score is ``f_b(x) - f_a(x)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import lpdsl as lp
from lpdsl.errors import DSLError
from lpdsl.metrics._base import (
    MetricLoss,
    as_float_array,
    as_float_tensor,
    as_labels,
    check_finite,
    require_lp,
    zero_gradient_constant,
)
from lpdsl.metrics.auc import PairwiseAUC, pairwise_rows
from lpdsl.validation import (
    check_one_of,
    check_positive_float,
    check_positive_int,
    eager,
    wide_float,
)


def _check_rows_differ(cost: np.ndarray) -> None:
    """Refuse a cost matrix with two equal rows ``a``, ``b`` (DSLError naming them).

    The orientation score of the block ``(a, b)`` is ``f(x) · (C[a] - C[b])``: for equal
    rows it is 0 for every sample, every pair of the block ties, and the block's estimate is
    a constant 0 with zero gradient (an all-zero cost matrix made the whole loss 0).
    """
    k = cost.shape[0]
    if not (cost[~np.eye(k, dtype=bool)] != 0).any():
        raise DSLError(
            f"Expected argument `cost` to have a nonzero off-diagonal entry but got "
            f"{cost.tolist()}: every class pair's orientation score f(x)·(C[a] - C[b]) is 0, "
            "every pair ties and the estimate is a constant 0 with zero gradient; the default "
            "is 1 - I"
        )
    for a in range(k):
        for b in range(a):
            # (rows equal up to 1e-12 of the matrix: their orientation, normalised, is noise)
            if np.abs(cost[a] - cost[b]).max() <= 1e-12 * np.abs(cost).max():
                raise DSLError(
                    f"Expected argument `cost` to have no two equal rows but rows {b} and {a} "
                    f"are equal to 1e-12 of its largest entry ({cost[b].tolist()} and "
                    f"{cost[a].tolist()}): the orientation score f(x)·(C[{a}] - "
                    f"C[{b}]) of classes {a} and {b} is 0, every pair of their block ties and "
                    f"its AUC is a constant 0 with zero gradient; give C[{a}, {b}] or "
                    f"C[{b}, {a}] a positive cost"
                )


class MulticlassAUCLoss(MetricLoss):
    """``1 - `` multiclass AUC (one-vs-all or AUCμ) by the ranking LPs of App. A.1.

    For each block (a class in ``"ova"`` mode, a class pair in ``"mu"`` mode) with "positive"
    scores ``g_i`` and "negative" scores ``g_j`` the LP is that of the binary AUC::

        min_z  sum_ij z_ij   s.t.  z_ij >= margin - (g_i - g_j),  z_ij >= 0

    (``"ova"``, eq. 8: ``g = f(., k)`` for block ``k``, positives of class ``k``;
    ``"mu"``, eq. 9: ``g = f(.) · (C[a] - C[b]) / max|C[a] - C[b]|`` (unit scale: the margin
    is in the scores' units) for classes ``a > b``, positives of class
    ``b``). The blocks are independent, so their sum is one LP whose solution is the blocks'
    solutions; :meth:`problem_for` returns that combined LP, while the loss solves the blocks
    through the binary model's cache (keyed by block shape), batching equal shapes.

    The estimate is the mean over blocks of ``mean_ij relu(margin - z_ij) / margin``.
    Blocks with an absent class are skipped (averaged over the defined blocks); a batch with
    fewer than two classes present is degenerate: estimate :attr:`degenerate_value` ``= 0.5``
    with zero gradient.

    Args:
        n_classes: Number of classes ``K >= 2``; scores are ``(n, K)``, labels ``(n,)`` in
            ``0 .. K-1``.
        mode: ``"ova"`` (one-vs-all, macro average) or ``"mu"`` (AUCμ).
        cost: AUCμ's ``(K, K)`` cost matrix (nonnegative, zero diagonal, no two rows
            equal: equal rows ``a``, ``b`` make every pair of block ``(a, b)`` tie); default
            ``1 - I``. Only with ``mode="mu"``.
        margin: The ranking margin of the LP (as :class:`~lpdsl.metrics.AUCLoss`'s: in
            ``"ova"`` mode, whose blocks keep the scores' dtype, one below that dtype's
            smallest normal number is a DSLError; ``"mu"`` blocks are in float64).
        **solve_options: Passed to the solver.
    """

    higher_is_better = False
    is_differentiable = True
    degenerate_value = 0.5

    def __init__(
        self,
        n_classes: int,
        mode: str = "ova",
        cost: Any = None,
        margin: float = 0.01,
        **solve_options: Any,
    ) -> None:
        super().__init__(solve_options)
        self.n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        self.mode = check_one_of("mode", mode, ("ova", "mu"))
        self.margin = check_positive_float("margin", margin)
        if cost is not None and mode != "mu":
            raise DSLError(
                f"Expected argument `cost` to be None with mode={mode!r} (it defines AUCμ's "
                "orientation; pass mode='mu' to use it)"
            )
        k = self.n_classes
        if cost is None:
            cost_arr = np.ones((k, k)) - np.eye(k)
        else:
            cost_arr = as_float_array("cost", cost)
            if cost_arr.shape != (k, k):
                raise DSLError(
                    f"Expected argument `cost` to be a ({k}, {k}) matrix but got shape "
                    f"{cost_arr.shape}"
                )
            if not np.isfinite(cost_arr).all() or (cost_arr < 0).any():
                raise DSLError(
                    f"Expected argument `cost` to be finite and nonnegative but got "
                    f"{cost_arr.tolist()}"
                )
            if (np.diag(cost_arr) != 0).any():
                raise DSLError(
                    f"Expected argument `cost` to have a zero diagonal but got "
                    f"{np.diag(cost_arr).tolist()}"
                )
            _check_rows_differ(cost_arr)
        self.cost = cost_arr
        self._pairs = PairwiseAUC(self.margin, self._cache, self.solve_options)
        self._last_problem: tuple[tuple[int, ...], Any] | None = None

    def extra_repr(self) -> str:
        k = self.n_classes  # a cost other than the default is shown (logs could not tell)
        custom = not np.array_equal(self.cost, np.ones((k, k)) - np.eye(k))
        cost = f", cost={self.cost.tolist()}" if custom else ""
        return f"n_classes={k}, mode={self.mode!r}{cost}, margin={self.margin}"

    # ----------------------------------------------------------------------------------------

    def _inputs(self, scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor]:
        scores = as_float_tensor(scores, "scores")
        labels = as_labels(labels, scores.device)
        k = self.n_classes
        if scores.ndim != 2 or scores.shape[1] != k:
            raise DSLError(
                f"Expected `scores` to have shape (n, {k}) (n_classes={k}) but got "
                f"{tuple(scores.shape)}"
            )
        if labels.shape != scores.shape[:1]:
            hint = (  # one-hot or per-class columns: say how to get the class indices
                "; pass the class indices, e.g. `labels.argmax(1)` for one-hot labels"
                if labels.shape == scores.shape
                else "; pass one class index per sample, e.g. `labels.reshape(-1)`"
                if labels.numel() == scores.shape[0]
                else ""
            )
            raise DSLError(
                f"Expected `labels` to have shape ({scores.shape[0]},) to match `scores` "
                f"{tuple(scores.shape)} but got {tuple(labels.shape)}{hint}"
            )
        if scores.shape[0] == 0:
            raise DSLError(f"Expected a non-empty batch but got `scores` of shape (0, {k})")
        check_finite(scores)
        bad = (labels != labels.round()) | (labels < 0) | (labels >= k)
        if bool(bad.any()):
            raise DSLError(
                f"Expected `labels` (shape {tuple(labels.shape)}) to hold class indices in "
                f"0..{k - 1} but found {sorted(set(labels[bad].tolist()))[:5]}"
            )
        return scores, labels.long()

    def _block_classes(self, present: list[int]) -> list[tuple[int, int | None]]:
        """The blocks of a batch whose classes ``present`` (ascending) are present, in the one
        order that :meth:`problem_for`'s variables and :meth:`_blocks`' vectors share: a class
        ``c`` against all others (``"ova"``: ``(c, None)``) or a pair ``a > b`` (``"mu"``).
        No block unless two classes are present."""
        if len(present) < 2:
            return []
        if self.mode == "ova":
            return [(c, None) for c in present]
        return [(a, b) for a in present for b in present if b < a]

    def _blocks(
        self, scores: torch.Tensor, labels: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(positive, negative)`` score vectors of every block, in block order."""
        by_class = [scores[labels == c] for c in range(self.n_classes)]
        present = [c for c, rows in enumerate(by_class) if rows.shape[0]]
        # the orientation scores in float64: formed in bfloat16 from scores of ~4 they were
        # rounded by ~1e-2, the margin's size, and the gradient was as large as its own error
        # (a reviewing helper, twentieth pass); the estimate comes back in the scores' dtype
        wide = wide_float(scores.dtype, scores.device)
        blocks = []
        for a, b in self._block_classes(present):
            if b is None:
                neg = torch.cat([by_class[o][:, a] for o in present if o != a])
                blocks.append((by_class[a][:, a], neg))
            else:
                v = torch.as_tensor(self._orientation(a, b), dtype=wide, device=scores.device)
                blocks.append((by_class[b].to(wide) @ v, by_class[a].to(wide) @ v))
        return blocks

    def _orientation(self, a: int, b: int) -> np.ndarray:
        """``(C[a] - C[b]) / max |C[a] - C[b]|``: the direction of block ``(a, b)``'s
        orientation score, at unit scale so that the margin is in the scores' units for every
        class pair whatever the cost matrix's units (``cost = 1e-4 (1 - I)`` gave 0.02 for the
        0.50 of ``1 - I``, which AUCμ, a function of rankings alone, cannot tell apart: a
        reviewing helper, twentieth pass); ``1 - I`` is unchanged."""
        v = self.cost[a] - self.cost[b]
        return v / np.abs(v).max()

    def degenerate_reason(self, scores: Any, labels: Any) -> str:
        """Why this batch is degenerate ('' if the LP is solved for it)."""
        _, labels = self._inputs(scores, labels)
        present = sorted(int(c) for c in labels.unique().tolist())
        if len(present) < 2:
            return (
                f"multiclass AUC of a batch with classes {present} present has no block; "
                f"its estimate is defined as {self.degenerate_value}"
            )
        return ""

    def problem_for(self, scores: Any, labels: Any) -> Any:
        """The combined LP (all blocks) for this batch's class counts (the last one is kept).

        Its parameters are the per-class score matrices ``scores_class<k>`` ``(n_k, K)`` of the
        classes present, in class order; their values are :meth:`parameter_values`.

        Raises:
            DSLError: if fewer than two classes are present (no LP is solved).
        """
        require_lp(self.degenerate_reason(scores, labels))
        scores, labels = self._inputs(scores, labels)
        k = self.n_classes
        counts = [int((labels == c).sum()) for c in range(k)]
        present = [c for c in range(k) if counts[c] > 0]
        key = tuple(counts)
        if self._last_problem is not None and self._last_problem[0] == key:
            return self._last_problem[1]
        params = {c: lp.Parameter((counts[c], k), name=f"scores_class{c}") for c in present}
        m = self.margin
        constraints = []
        zs = []
        for a, b in self._block_classes(present):
            if b is None:
                neg = lp.hstack([params[o][:, a] for o in present if o != a])
                z, rows = pairwise_rows(params[a][:, a], neg, m, f"z_{a}")
            else:
                v = self._orientation(a, b)
                z, rows = pairwise_rows(params[b] @ v, params[a] @ v, m, f"z_{a}_{b}")
            constraints.append(rows)
            zs.append(z)
        objective = zs[0].sum()
        for z in zs[1:]:
            objective = objective + z.sum()
        problem = lp.Problem(lp.Minimize(objective), constraints)
        self._last_problem = (key, problem)
        return problem

    def parameter_values(self, scores: Any, labels: Any) -> list[torch.Tensor]:
        """Values of ``problem_for(scores, labels).parameters()``: per-class score rows."""
        scores, labels = self._inputs(scores, labels)
        return [
            scores[labels == c].detach() for c in range(self.n_classes) if bool((labels == c).any())
        ]

    def solution(self, scores: Any, labels: Any) -> dict[Any, torch.Tensor]:
        """The optimal ``z`` of every block, keyed by the variables of :meth:`problem_for`."""
        problem = self.problem_for(scores, labels)
        scores, labels = self._inputs(scores, labels)
        zs = self._pairs.solve(self._blocks(scores, labels))
        return dict(zip(problem.variables(), zs, strict=True))

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def estimate(self, scores: Any, labels: Any) -> torch.Tensor:
        """Macro one-vs-all AUC (``"ova"``) or AUCμ (``"mu"``) estimated by the LPs."""
        scores, labels = self._inputs(scores, labels)
        blocks = self._blocks(scores, labels)
        if not blocks:
            return zero_gradient_constant(scores, self.degenerate_value)
        return torch.stack(self._pairs.estimates(blocks)).mean().to(scores.dtype)
