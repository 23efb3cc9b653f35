"""Binary AUC as a linear program (paper §2.2, eqs. (2)–(3); Ataman et al. 2006).

For ``P`` positive scores ``f_i`` and ``N`` negative scores ``f_j`` the LP is::

    minimize    sum_ij z_ij
    subject to  z_ij >= margin - (f_i - f_j)     for every positive i and negative j
                z_ij >= 0

and the AUC estimate (eq. 3) is ``mean_ij relu(margin - z_ij) / margin``: a pair ranked
correctly by at least ``margin`` counts 1, a mis-ranked pair 0, a pair in between
``(f_i - f_j) / margin``. When every positive–negative gap exceeds the margin (either way)
the estimate equals the Wilcoxon–Mann–Whitney AUC, :func:`sklearn.metrics.roc_auc_score`.

The model's constraint matrix is two stacked (negated) identities, so the solver works on a
diagonal system; the model is compiled once per ``(P, N)`` and solved with ``layout="sparse"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch

import lpdsl as lp
from lpdsl.errors import DSLError
from lpdsl.metrics._base import (
    CompiledModel,
    MetricLoss,
    ShapeCache,
    binary_inputs,
    require_lp,
    zero_gradient_constant,
)
from lpdsl.validation import check_positive_float, eager


def auc_problem(n_pos: int, n_neg: int, margin: float) -> CompiledModel:
    """Declare LP (2) for ``n_pos`` positives and ``n_neg`` negatives.

    Args:
        n_pos: Number of positive samples ``P >= 1``.
        n_neg: Number of negative samples ``N >= 1``.
        margin: The ranking margin ``epsilon > 0``.

    Returns:
        The model with parameters ``pos_scores (P,)``, ``neg_scores (N,)`` and variable
        ``z (P, N)``.
    """
    pos = lp.Parameter(n_pos, name="pos_scores")
    neg = lp.Parameter(n_neg, name="neg_scores")
    z, rows = pairwise_rows(pos, neg, margin, "z")
    problem = lp.Problem(lp.Minimize(z.sum()), [rows])
    return CompiledModel(problem, [pos, neg], [z], layout="sparse")


def pairwise_rows(pos: Any, neg: Any, margin: float, name: str) -> tuple[Any, Any]:
    """The pair variables ``z (P, N) >= 0`` of LP (2) and its rows ``z_ij >= margin - gap_ij``
    with ``gap_ij = pos_i - neg_j``, for score expressions ``pos (P,)`` and ``neg (N,)``."""
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    z = lp.Variable((n_pos, n_neg), name=name, nonneg=True)
    gap = pos.reshape((n_pos, 1)) - neg.reshape((1, n_neg))
    return z, z >= margin - gap


def _check_margin(margin: float, dtype: torch.dtype) -> None:
    """Refuse a margin below the smallest normal number of ``dtype`` (the scores'): it rounds
    to 0 or loses its digits there, and ``1 / margin`` overflows (float16 scores with
    ``margin=1e-8`` estimated 0 for 7/9, float32 ones with 1e-50 NaN, both with NaN
    gradients: a probing helper, 25th pass)."""
    if dtype.is_floating_point and margin < torch.finfo(dtype).tiny:
        wider = "pass the scores in a wider dtype (float32, float64) or " * (dtype != torch.float64)
        raise DSLError(
            f"margin={margin:g} is below the smallest normal number of the scores' dtype "
            f"{dtype} ({torch.finfo(dtype).tiny:.3g}): it rounds to 0 there and the estimate, "
            f"a division by the margin, is undefined; {wider}use a larger margin"
        )


class PairwiseAUC:
    """Solves batches of binary AUC LPs (2) that may differ in ``(P, N)``.

    Blocks of the same shape are stacked along a batch dimension and solved in one call; the
    compiled model of each shape is cached, so repeated shapes do no symbolic work.

    Args:
        margin: The ranking margin of LP (2).
        cache: Where the compiled models live (shared with the owning loss).
        solve_options: Options for the solver.
    """

    def __init__(self, margin: float, cache: ShapeCache, solve_options: dict[str, Any]) -> None:
        _check_margin(margin, torch.float64)  # at construction where no dtype can take it
        self.margin = margin
        self.cache = cache
        self.solve_options = solve_options

    def model(self, n_pos: int, n_neg: int) -> CompiledModel:
        """The cached model for ``(n_pos, n_neg)``."""

        def build(key: Any) -> CompiledModel:
            model = auc_problem(key[0], key[1], self.margin)
            model.solve_options = self.solve_options
            return model

        return self.cache.get((n_pos, n_neg), build)

    def solve(self, blocks: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """The optimal ``z`` of each block ``(pos_scores, neg_scores)``, in order.

        Raises:
            DSLError: if the margin is below the smallest normal number of the scores'
                dtype (:func:`_check_margin`).
        """
        _check_margin(self.margin, blocks[0][0].dtype if blocks else torch.float64)
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for k, (pos, neg) in enumerate(blocks):
            groups[(pos.numel(), neg.numel())].append(k)
        out: list[torch.Tensor | None] = [None] * len(blocks)
        for (n_pos, n_neg), members in groups.items():
            model = self.model(n_pos, n_neg)
            pos = torch.stack([blocks[k][0] for k in members])
            neg = torch.stack([blocks[k][1] for k in members])
            (z,) = model.solve(pos, neg)
            for row, k in enumerate(members):
                out[k] = z[row]
        return [z for z in out if z is not None]

    def estimates(self, blocks: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
        """Eq. (3) for each block: ``mean relu(margin - z) / margin``, with the derivative of
        ``relu`` at 0 taken as 1: a tied pair (``z = margin``, up to the rounding of a float32
        solve, ``TIE_ULPS``) gets the one-sided derivative from above, ``1 / margin`` per unit
        of gap. With ``torch.relu``'s 0 there, all-tied scores (a zero-initialised model, dead
        units) had an all-zero gradient and never trained (a reviewing helper, twentieth
        pass), and with ``clamp_min``'s 1 at exactly 0 a float32 solve's ``z = fl(margin) >
        margin`` lost it again (margins 0.1, 0.3: a verifying helper)."""
        tie = TIE_ULPS * torch.finfo(torch.float32).eps * self.margin
        out = []
        for z in self.solve(blocks):
            gap = self.margin - z
            value = gap.detach()
            # the value clamped at 0, the derivative 1 down to -tie and 0 below
            kept = torch.where(value >= -tie, gap + (value.clamp_min(0.0) - value), 0.0)
            out.append((kept / self.margin).mean())
        return out


#: A pair whose ``margin - z`` lies within this many float32 ulps of the margin below 0 is a
#: tie (its derivative from above), whatever the solve's arithmetic.
TIE_ULPS = 64


class AUCLoss(MetricLoss):
    """``1 - AUC`` estimated by the pairwise ranking LP of paper §2.2, eqs. (2)–(3).

    The LP for a batch with positive scores ``f_i`` (``P`` of them) and negative scores
    ``f_j`` (``N``) is::

        min_z  sum_ij z_ij   s.t.  z_ij >= margin - (f_i - f_j),  z_ij >= 0

    and the estimate is ``mean_ij relu(margin - z_ij) / margin`` (eq. 3). Scores are used as
    given (no squashing). It equals :func:`sklearn.metrics.roc_auc_score` whenever every
    positive–negative gap is ``>= margin`` or ``< 0`` (a tie counts 0 here, 1/2 there);
    gradients flow only through pairs
    whose gap lies in ``[0, margin]``, or below 0 by less than 64 float32 ulps of the margin
    (ties: the LP's active set changes nowhere else; a tie takes the derivative from above, so
    all-tied scores still train; at a gap equal to the margin the vertex is degenerate, and
    the derivative is half of ``1/margin``).

    Degenerate batches (no positive or no negative label) have no pairs: the estimate is
    :attr:`degenerate_value` ``= 0.5`` (chance level) with zero gradient.

    The LP is compiled once per ``(P, N)`` and cached; ``cache_info()`` counts reuses.

    Args:
        margin: The ranking margin ``epsilon`` (paper Table 2 uses 0.01). The solver's
            tolerance has an absolute part of ~1e-9 (``docs/solver.md`` §3), so a margin
            below ~1e-7 (with scores on its scale: the same LP scaled down) can end
            ``MAX_ITER`` (3e-9: 2 of 3 random batches); from 3e-8 to 0.3 the estimates of
            such scaled batches agreed to every digit printed. Keep scores and margin in
            units near 1. A margin below the smallest normal number of the scores' dtype
            (float16: 6.1e-5) is a DSLError.
        **solve_options: Passed to the solver (``eps``, ``max_iter``, ...).

    Example:
        >>> loss = AUCLoss(margin=0.01)
        >>> value = loss(logits, labels)        # doctest: +SKIP
        >>> prob = loss.problem_for(logits, labels)
        >>> cp_prob, cp_vars = prob.to_cvxpy(*loss.parameter_values(logits, labels))
    """

    higher_is_better = False
    is_differentiable = True
    degenerate_value = 0.5

    def __init__(self, margin: float = 0.01, **solve_options: Any) -> None:
        super().__init__(solve_options)
        self.margin = check_positive_float("margin", margin)
        self._pairs = PairwiseAUC(self.margin, self._cache, self.solve_options)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    @staticmethod
    def _split(scores: Any, labels: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores, labels = binary_inputs(scores, labels)
        is_pos = labels > 0.5
        return scores, scores[is_pos], scores[~is_pos]

    def problem_for(self, scores: Any, labels: Any) -> Any:
        """The :class:`lpdsl.Problem` solved for this batch (parameters: pos, neg scores).

        Its parameter values are :meth:`parameter_values` ``(scores, labels)``; e.g.
        ``problem.to_cvxpy(*loss.parameter_values(scores, labels))``.

        Raises:
            DSLError: if the batch has no positive or no negative label (no LP is solved).
        """
        require_lp(self.degenerate_reason(scores, labels))
        _, pos, neg = self._split(scores, labels)
        return self._pairs.model(pos.numel(), neg.numel()).problem

    def degenerate_reason(self, scores: Any, labels: Any) -> str:
        """Why this batch is degenerate ('' if the LP is solved for it)."""
        _, pos, neg = self._split(scores, labels)
        if pos.numel() == 0 or neg.numel() == 0:
            return (
                f"AUC of a batch with {pos.numel()} positive and {neg.numel()} negative labels "
                f"has no positive-negative pair, so there is no LP; its estimate is defined as "
                f"{self.degenerate_value}"
            )
        return ""

    def parameter_values(self, scores: Any, labels: Any) -> list[torch.Tensor]:
        """The values of ``problem_for(scores, labels).parameters()``, in order."""
        _, pos, neg = self._split(scores, labels)
        return [pos.detach(), neg.detach()]

    def solution(self, scores: Any, labels: Any) -> dict[Any, torch.Tensor]:
        """The optimal ``z`` keyed by the variable of :meth:`problem_for` (differentiable)."""
        problem = self.problem_for(scores, labels)
        _, pos, neg = self._split(scores, labels)
        (z,) = self._pairs.solve([(pos, neg)])
        return {problem.variables()[0]: z}

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def estimate(self, scores: Any, labels: Any) -> torch.Tensor:
        """The AUC estimate of eq. (3) for this batch (differentiable in ``scores``)."""
        scores, pos, neg = self._split(scores, labels)
        if pos.numel() == 0 or neg.numel() == 0:
            return zero_gradient_constant(scores, self.degenerate_value)
        (est,) = self._pairs.estimates([(pos, neg)])
        return est
