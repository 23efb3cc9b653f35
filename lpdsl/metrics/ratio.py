"""Ratio metrics of TP, FP, FN, TN as linear-fractional programs (paper §2.4, App. A.2).

A metric ``(a·TP + b·FP + c·FN + d·TN + e) / (a'·TP + ... + e')`` is estimated on a batch
with labels ``y in {0, 1}^n`` and squashed scores ``phi = tanh(scores)`` by the LP relaxation
over predictions ``ŷ in [0, 1]^n``::

    maximize    num(ŷ) / den(ŷ)
    subject to  phi_i <= ŷ_i <= 1 + phi_i,  0 <= ŷ <= 1,   user constraints (linear rows)

with ``TP = y·ŷ``, ``FP = (1 - y)·ŷ``, ``FN = y·(1 - ŷ)``, ``TN = (1 - y)·(1 - ŷ)``. The box
is built with one row per side, ``max(phi, 0) <= ŷ <= min(1 + phi, 1)`` (:func:`prediction_box`):
of its four bounds two are redundant, and nearly parallel to the binding ones when
``|phi| << 1`` (docs/metrics.md, "Small scores"). The ratio objective is written as
``num / den`` in the DSL; the compiler applies Charnes–Cooper
(paper §2.4, eq. (5) and the LP below it, App. A.2.1: ``z = ŷ t``, ``t = 1 / den``). When
the scores are saturated (``phi = ±1``) the box pins ``ŷ`` to the thresholded predictions
and the estimate equals the metric of those predictions.

The formula and the constraints are parsed by :mod:`lpdsl.metrics.formula` into affine
functions of ``(TP, FP)`` whose coefficients are polynomials in the label counts ``n_pos =
1·y`` and ``n_neg = 1·(1 - y)`` (parameters of the model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy
import torch

import lpdsl as lp
from lpdsl.errors import DSLError, SolverError
from lpdsl.layers import LAYER_OPTIONS, SOLVE_OPTIONS
from lpdsl.metrics._base import (
    CompiledModel,
    MetricLoss,
    binary_inputs,
    require_lp,
    zero_gradient_constant,
)
from lpdsl.metrics.formula import (
    FN,
    FP,
    LOWER_IS_BETTER,
    N_NEG,
    N_POS,
    NAME,
    TN,
    TP,
    Affine,
    nfkc,
    parse_constraint,
    parse_ratio,
)
from lpdsl.validation import check_fraction, check_positive_float, eager, wide_float

#: metric_at takes relaxed predictions within this much of [0, 1]: another solver's accuracy
#: (cvxpylayers' SCS gave -3.3e-5 on the benchmark's F1 batch)
YHAT_SLACK = 1e-2
#: The estimate of a ratio model's optimum is the metric at a feasible corner less this share
#: of its size (from below: measured as fast as at 0.2, docs/performance.md)
ESTIMATE_MARGIN = 0.1


# --------------------------------------------------------------------------------------------
# the 2-D picture used for degenerate batches
#
# With FN = n_pos - TP and TN = n_neg - FP everything depends on ŷ through (TP, FP) only, and
# the set of reachable (TP, FP) for a box lo <= ŷ <= hi is the rectangle
# [sum_pos lo, sum_pos hi] x [sum_neg lo, sum_neg hi]. The user's rows cut it to a polygon.
# Its vertices tell, exactly and cheaply, whether the LP is feasible and whether the
# denominator stays positive (which Charnes–Cooper needs). The LP itself is still what
# computes the estimate and its gradient.


#: How degenerate_reason's text for a batch whose constraints cannot hold begins.
INFEASIBLE = "infeasible"
#: ``RatioMetricLoss._undefined``'s reason when no prediction meets the constraints.
NO_PREDICTION = "no prediction ŷ in [0, 1]^n meets the constraints"
#: The label counts ``(n_pos, n_neg)`` at which the constructor tries a model: it is refused
#: only when it is wrong at all of them (small and large batches, balanced and skewed).
PROBES = (
    (1.0, 1.0),
    (2.0, 3.0),
    (3.0, 2.0),
    (64.0, 64.0),
    (10.0, 1e4),
    (1e4, 10.0),
    (1e6, 1e6),
)
PROBE_RANGE = "1 to 1e6 positive and negative labels"
#: Relative tolerance of the polygon's vertex tests (float64 rounding is ~1e-16 per term).
TOL = 1e-9
#: The denominator counts as reaching 0 at a vertex where it is at most ``DEN_TOL`` times the
#: sum of its terms' magnitudes there (``|d0| + |d1| TP + |d2| FP``: zero only where terms
#: cancel, or all vanish; float64 rounds the sum by ~1e-16 of it). Absolute thresholds failed
#: both ways: 1e-9 on cancel()'s integer scale made ``FBetaLoss(1e-4)`` (``den = 1e-8 n_pos +
#: TP + FP``) degenerate on every batch with 9 times more negatives than positives, and
#: ``1e-13 (1 + n)`` on the unit scale made ``K TP / (K TP + FP + 1)`` (``den >= 1``) with
#: ``K = 1e10`` "undefined", estimate 0, on a batch of 2,000 (a reviewing helper).
DEN_TOL = 1e-13
#: Where the solver fails on a batch whose denominator, though positive, comes within
#: ``DEN_NEAR_ZERO * (1 + n)`` of 0 at a vertex (on the unit scale: a smoothing constant such as
#: ``e = 1e-12`` in ``(TP + e) / (TP + FP + e)``), the batch counts as degenerate: the
#: Charnes-Cooper ``t = 1 / den`` there is beyond what the solver resolves (MAX_ITER or
#: UNBOUNDED raised SolverError on batches without positives, a reviewing helper).
DEN_NEAR_ZERO = 1e-13
#: A batch whose constraints hold with less slack than ``MARGIN * (1 + n)`` counts is at the
#: edge of feasibility: where the solver cannot decide it (it ends MAX_ITER there, feasible
#: or not within its tolerance), the batch counts as degenerate (see ``estimate``).
MARGIN = 1e-6


def _polygon_vertices(
    box: tuple[float, float, float, float], rows: Sequence[tuple[float, float, float, str]]
) -> np.ndarray:
    """Vertices of ``{(tp, fp) in box : r0 + r1 tp + r2 fp >= 0 (or == 0)}`` (k, 2)."""
    tp_lo, tp_hi, fp_lo, fp_hi = box
    scale = 1.0 + max(abs(v) for v in box)
    lines = [(-tp_lo, 1.0, 0.0), (-tp_hi, 1.0, 0.0), (-fp_lo, 0.0, 1.0), (-fp_hi, 0.0, 1.0)]
    lines += [(r0, r1, r2) for r0, r1, r2, _ in rows]
    pts = []
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            a0, a1, a2 = lines[i]
            b0, b1, b2 = lines[j]
            det = a1 * b2 - a2 * b1
            if abs(det) < 1e-12 * (abs(a1) + abs(a2)) * (abs(b1) + abs(b2)) or det == 0:
                continue
            pts.append(((-a0 * b2 + a2 * b0) / det, (-a1 * b0 + a0 * b1) / det))
    if not pts:
        return np.zeros((0, 2))
    p = np.asarray(pts)
    tol = TOL * scale
    ok = (p[:, 0] >= tp_lo - tol) & (p[:, 0] <= tp_hi + tol)
    ok &= (p[:, 1] >= fp_lo - tol) & (p[:, 1] <= fp_hi + tol)
    return p[ok & _on_rows(rows, p, scale)]


def _on_rows(
    rows: Sequence[tuple[float, float, float, str]], p: np.ndarray, scale: float
) -> np.ndarray:
    """Which points ``p`` ``(k, 2)`` of ``(tp, fp)`` meet the rows ``r0 + r1 tp + r2 fp >= 0``
    (or ``== 0``), to ``TOL`` of their terms' size at counts up to ``scale``."""
    ok = np.ones(len(p), dtype=bool)
    for r0, r1, r2, sense in rows:
        val = r0 + r1 * p[:, 0] + r2 * p[:, 1]
        # relative to the size of the terms of val (it was tol * (|r0| + |r1| + |r2| + 1),
        # ~n^2: at n = 2,000 a P@R batch infeasible by 3e-3 counts passed, and the solver
        # then ended MAX_ITER)
        rtol = TOL * (abs(r0) + (abs(r1) + abs(r2)) * scale + 1.0)
        ok &= (np.abs(val) <= rtol) if sense == "==" else (val >= -rtol)
    return ok


def _squash(scores: torch.Tensor) -> torch.Tensor:
    """``phi = tanh(scores)`` in float64 (float32 on MPS): in bfloat16 the derivative of a
    misclassified sample came out exactly 0 from ``|s| = 4`` on (float32: ``|s| ~ 9``), and the
    box ``min(1 + phi, 1)`` of a saturated sample is ``1 + phi``, a difference of rounded
    numbers (a training helper's probe, 21st pass)."""
    return torch.tanh(scores.to(wide_float(scores.dtype, scores.device)))


def _wide(phi: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``phi`` and ``labels`` in float64 (float32 on MPS) for the LP, whatever the scores'
    dtype: the constants of its rows (``alpha``, ``3 / n_pos``, ...) are made in the values'
    dtype, and rounded to float32 a saturated batch meeting a constraint with equality
    (precision exactly ``alpha``, ``FP`` exactly 3) was infeasible to the solver, though the
    float64 polygon test found it feasible: its estimate came out 0, the worst value (12 of 36
    such batches of recall at precision 0.6: a reviewing helper's probe, eighteenth pass)."""
    wide = wide_float(phi.dtype, phi.device)
    return phi.to(wide), labels.to(phi.device, wide)


def prediction_box(phi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(max(phi, 0), min(1 + phi, 1))``: the bounds of ``ŷ`` in the ratio LP, one row per side.

    The paper's box ``phi <= ŷ <= 1 + phi, 0 <= ŷ <= 1`` has two redundant bounds per sample,
    and where ``|phi| << 1`` they are nearly parallel to the binding ones (``z >= phi t`` next
    to ``z >= 0`` after Charnes–Cooper). An exterior penalty penalises a violated redundant
    row as well, and their ``phi t`` terms pushed the Charnes–Cooper scale ``t`` with forces
    ``~ |phi| eps`` along an edge on which P@R's objective changes by ``~ |phi|`` only: at
    logits of 1e-5..1e-8 4-68 % of P@R batches ended MAX_ITER (docs/metrics.md, "Small
    scores"). At ``phi = 0`` (a zero logit) the derivative is 1/2 for each bound, the mean of
    its one-sided derivatives, as the two duplicate rows of the four-row box split it.
    """
    # phi +- |phi| is 2 phi or 0 exactly, so the bounds are the old rows' phi and 1 + phi
    return (phi + phi.abs()) * 0.5, 1.0 + (phi - phi.abs()) * 0.5


def _reachable_box(
    phi: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(TP_lo, TP_hi, FP_lo, FP_hi)``: the rectangle of ``(TP, FP)`` reachable by predictions
    in the box ``max(phi, 0) <= ŷ <= min(1 + phi, 1)``, in float64 (float32 sums round a miss
    of 1e-7 of a count away; float32 on MPS, which has no float64) and differentiable in
    ``phi``."""
    phi = phi.to(torch.float32 if phi.device.type == "mps" else torch.float64)
    y = labels.to(phi.device, phi.dtype)
    lo, hi = prediction_box(phi)
    return (y * lo).sum(), (y * hi).sum(), ((1 - y) * lo).sum(), ((1 - y) * hi).sum()


def _tightened(
    rows: Sequence[tuple[float, float, float, str]], delta: float
) -> list[tuple[float, float, float, str]]:
    """The inequality rows moved inward by ``delta`` counts (equalities unchanged). Every
    row reads ``row >= 0``, also one written with ``<=`` (whose sense is kept for messages):
    such rows were left where they were (a reviewing helper's probe)."""
    return [
        (r0 - delta * (abs(r1) + abs(r2)) if sense != "==" else r0, r1, r2, sense)
        for r0, r1, r2, sense in rows
    ]


# --------------------------------------------------------------------------------------------
# the loss


class RatioMetricLoss(MetricLoss):
    """``1 - `` a ratio metric of TP, FP, FN, TN, estimated by a linear-fractional program.

    The LP for a batch (paper §2.4 eq. (5), App. A.2) with labels ``y``, squashed scores
    ``phi = tanh(scores)`` and relaxed predictions ``ŷ``::

        maximize_ŷ  num(TP, FP, FN, TN) / den(TP, FP, FN, TN)
        subject to  phi <= ŷ <= 1 + phi,   0 <= ŷ <= 1,   constraints

    with ``TP = y·ŷ, FP = (1-y)·ŷ, FN = y·(1-ŷ), TN = (1-y)·(1-ŷ)``; the box is stated as
    ``max(phi, 0) <= ŷ <= min(1 + phi, 1)``, one row per side (:func:`prediction_box`). At
    saturated scores the estimate is the metric of the thresholded predictions ``scores > 0``.

    Degenerate batches: the denominator can reach 0 for some ``ŷ in [0, 1]^n`` meeting the
    constraints (for F-β, Jaccard and P@R: the batch has no positive label; zero gradient),
    or no ``ŷ`` allowed by the scores meets the constraints (e.g. P@R when even the most
    generous prediction has recall below ``alpha``; the gradient then pulls towards
    feasibility row by row, see :meth:`_degenerate_estimate`: constraints each satisfiable
    but not together get none), or a constraint's ratio is undefined on the batch (its
    denominator is 0 for every ``ŷ``: ``"recall >= 0.9"`` on a batch without positives;
    zero gradient). Their estimate is the metric's worst value on the batch: its
    minimum over every prediction ``ŷ in [0, 1]^n`` (constraints ignored), where a ``0/0``
    counts as :attr:`degenerate_value` ``= 0.0`` (see :meth:`_worst_value`). That is 0.0 for
    the presets, and -1 for ``"-FP/(FP+TN)"``, so an infeasible batch never looks better
    than a feasible one of the same label counts (and, where no prediction meets the
    constraints at its counts, it scores at most ``degenerate_value``; worst values at
    different counts need not order: ``"TP/(TN-2)"`` with ``"TP >= 5"`` scores -3 at 3 + 1
    labels and a feasible batch of 10 + 1 -9.6).

    Args:
        formula: The metric, e.g. ``"2*TP/(2*TP+FP+FN)"``; may use ``TP, FP, FN, TN``,
            the rates ``precision`` (``ppv``), ``recall`` (``tpr``, ``sensitivity``),
            ``specificity`` (``tnr``, ``selectivity``), ``npv``, ``fpr``, ``fnr``, ``fdr``,
            ``accuracy`` and the keyword constants. It is maximised, so write
            higher-is-better metrics (``TN/(TN+FP)`` or ``1 - fpr``, not ``fpr``).
        constraints: Linear constraints such as ``"recall >= 0.8"`` or
            ``"TP >= 0.8*(TP+FN)"`` (one string, a sequence, or None for none); ratios are
            multiplied through by their (nonnegative) denominators.
        solve_options: Options for the solver (a dict).
        **constants: Named constants used in the formula or constraints (e.g. ``beta=2``):
            finite real numbers (``int``, ``float``, numpy scalars, ``Fraction``; not bool).

    Raises:
        DSLError: if the formula is not a ratio of affine combinations of the counts, uses
            unknown names, or is wrong on every batch: its denominator can reach 0 at a
            prediction meeting the constraints, or no prediction meets them (tried at
            :data:`PROBES`; a model wrong only on some batches, as ``"TP >= 2"`` on a batch
            with one positive, is accepted and those batches are degenerate).
    """

    higher_is_better = False
    is_differentiable = True
    #: What a ``0/0`` counts in the worst value that degenerate batches get (not, as for the
    #: AUC losses, the estimate of every degenerate batch).
    degenerate_value = 0.0

    def __init__(
        self,
        formula: str,
        constraints: Sequence[str] | None = (),
        *,
        solve_options: dict[str, Any] | None = None,
        **constants: Any,
    ) -> None:
        super().__init__(solve_options)
        if constraints is None:
            constraints = []
        elif isinstance(constraints, str):
            constraints = [constraints]
        elif not isinstance(constraints, (list, tuple)):  # list(5) raised a bare TypeError
            raise DSLError(
                f"Expected `constraints` to be a string or a list of strings but got "
                f"{type(constraints).__name__} {constraints!r}"
            )
        if isinstance(formula, str) and formula.strip() in LOWER_IS_BETTER:
            # it trained towards wrong predictions: loss 1 for perfect scores, 0 for all wrong
            # (a verifying helper, 26th pass, once these names were in the language)
            name = formula.strip()
            raise DSLError(
                f"RatioMetricLoss({formula!r}): the loss maximises its formula, and {name} is "
                f"better lower: write '1 - {name}' (or bound it in a constraint, e.g. "
                f"'{name} <= 0.1')"
            )
        self.formula = formula
        self.constraints = list(constraints)
        self.constants = dict(constants)
        # before the constants' values are checked: strict=False was refused as "not a finite
        # real number", though it is an option every other loss takes as a keyword
        texts = (formula, *self.constraints)
        if all(isinstance(t, str) for t in texts):  # else parsing names the wrong type
            used = {nfkc(n) for text in texts for n in NAME.findall(text)}
        else:
            used = set(constants)
        unused = sorted(k for k in constants if nfkc(k) not in used)
        if unused:  # a misspelt solver option (max_iters=3) became a constant
            options = {k: constants[k] for k in unused if k in SOLVE_OPTIONS | LAYER_OPTIONS}
            if options:
                advice = f"pass solve_options={options!r}"
            else:
                advice = "solver options go in solve_options={...}"
            raise DSLError(
                f"RatioMetricLoss: keyword argument(s) {unused} are not used by the formula or "
                f"the constraints (keywords are the formula's constants; {advice})"
            )
        self.num, self.den = parse_ratio(formula, constants)
        self.rows = [parse_constraint(c, constants) for c in self.constraints]
        self._lambdify()
        if not self.den.has_counts() and not self.num.has_counts():
            raise DSLError(
                f"the formula {formula!r} does not depend on the predictions (TP, FP, FN, TN "
                "cancel out); there is nothing to optimise"
            )
        self._check_well_posed()

    def _check_well_posed(self) -> None:
        """Refuse a model that is wrong on every batch, saying what is wrong.

        A model that is wrong only on some batches is accepted, and those batches are
        degenerate: ``"TP >= 2"`` cannot hold with fewer than 2 positives, but holds on a
        batch of 64 (the constructor used to try only 1 positive and 1 negative, refused it,
        and advised a constraint that keeps the denominator positive). The model is tried at
        the label counts of :data:`PROBES`; where it is well posed at none, the denominator
        reaching 0 (plain precision ``TP/(TP+FP)`` at ``ŷ = 0``) and constraints that no
        prediction meets (``"recall >= 1.2"``) get different messages.
        """
        for k, row in enumerate(self.rows):
            if all(self._only_vacuous(k, p, q) for p, q in PROBES if p > 0 and q > 0):
                raise DSLError(
                    f"RatioMetricLoss({self.formula!r}): the constraint {row.text!r} holds only "
                    f"where its denominator {row.den} is 0 (0/0: no predicted positive, for "
                    f"precision), on any batch (tried {PROBE_RANGE}), so it constrains "
                    "nothing but forces that; a bound on recall, precision or specificity "
                    "must lie in [0, 1]"
                )
        found = [(n_pos, n_neg, self._undefined(n_pos, n_neg)) for n_pos, n_neg in PROBES]
        if any(not why for *_, why in found):
            return
        vanishing = [(p, q, why) for p, q, why in found if why != NO_PREDICTION]
        if vanishing:
            p, q, why = vanishing[0]
            if self.rows:  # PrecisionAtRecallLoss(1e-9) was told to add what it has
                given = f" with {self.constants}" if self.constants else ""
                advice = (
                    f"The constraints {self.constraints}{given} do not keep it away from 0 (a "
                    "bound that keeps it positive by ~1e-9 of a count or less is within "
                    "rounding of 0): strengthen them"
                )
            else:
                advice = (
                    "Add a constraint that keeps the denominator positive (e.g. precision with "
                    '"recall >= 0.5", which is PrecisionAtRecallLoss)'
                )
            raise DSLError(
                f"the ratio {self.formula!r} is not well posed as an LP: its denominator can "
                "reach 0 at a prediction that meets the constraints, on batches of every size "
                f"and class balance tried (for {p:g} positive and {q:g} negative labels "
                f"{why}). {advice}"
            )
        impossible = [
            row.text
            for k, row in enumerate(self.rows)
            if all(
                len(_polygon_vertices((0.0, p, 0.0, q), self._rows_numeric(p, q)[k : k + 1])) == 0
                for p, q in PROBES
            )
        ]
        if impossible:
            what = f"the constraint {impossible[0]!r} cannot hold: no prediction meets it"
        else:
            what = (
                f"the constraints {self.constraints} cannot hold together: no prediction "
                "meets them all"
            )
        raise DSLError(
            f"RatioMetricLoss({self.formula!r}): {what} on any batch (tried {PROBE_RANGE}), so "
            "every batch would be infeasible; check the constraints' bounds (a bound on "
            "recall, precision or specificity must lie in [0, 1])"
        )

    def _sign(self, n_pos: float, n_neg: float) -> float:
        """The ratio's orientation on a batch of these label counts: -1 where the parsed
        denominator is negative at every vertex of the constraints' polygon (the ratio is
        then well posed with both parts negated), else 1. The parser picks the sign from the
        unconstrained box, where ``TN - 2`` averages negative, and ``TP / (TN - 2)`` with
        ``"TN >= 3"`` was refused as reaching 0; oriented once for all batch sizes, the same
        with ``"specificity >= 0.9"`` was degenerate on every batch of 10 + 10 labels (probing
        and verifying helpers, 25th pass). Where no prediction meets the constraints (an
        infeasible batch, scored by its worst value over the box) the box's, where the
        denominator keeps one sign on it (a batch where ``"TP >= 5"`` could not hold scored 0,
        above every feasible batch's -9.6, in the probes' orientation: a verifying helper),
        else the probes' (:data:`PROBES`): -1 if every probe with a polygon had -1. Memoised
        per counts."""
        key = (float(n_pos), float(n_neg))
        sign = self._signs.get(key)
        if sign is None:
            sign = self._polygon_sign(*key)
            if sign is None:  # the worst value ignores the constraints: the box's sign
                sign = self._polygon_sign(*key, box=True)  # where it is one throughout
            if sign is None:
                found = [self._polygon_sign(p, q) for p, q in PROBES]
                signs = [s for s in found if s is not None]
                sign = -1.0 if signs and all(s < 0.0 for s in signs) else 1.0
            self._signs[key] = sign
        return sign

    def _polygon_sign(self, n_pos: float, n_neg: float, box: bool = False) -> float | None:
        """-1 where the parsed denominator is negative at every vertex of the constraints'
        polygon at these counts, 1 where not, None where the polygon is empty. With ``box``
        (the box alone, constraints ignored): -1 or 1 where the denominator is negative or
        positive at every vertex, None where its sign changes."""
        rows = [] if box else self._rows_numeric(n_pos, n_neg)
        verts = _polygon_vertices((0.0, n_pos, 0.0, n_neg), rows)
        if len(verts) == 0:
            return None
        d0, d1, d2 = (float(v) for v in self._den_fn(n_pos, n_neg))
        den = d0 + d1 * verts[:, 0] + d2 * verts[:, 1]
        if bool((den < 0.0).all()):
            return -1.0
        return 1.0 if not box or bool((den > 0.0).all()) else None

    def _oriented(self, n_pos: Any, n_neg: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The numerator's and the denominator's coefficients ``(c0, c_tp, c_fp)`` at these
        counts, in this batch's orientation (:meth:`_sign`)."""
        num, den = self._num_fn(n_pos, n_neg), self._den_fn(n_pos, n_neg)
        if self._sign(float(n_pos), float(n_neg)) > 0.0:
            return num, den
        return tuple(-k for k in num), tuple(-k for k in den)

    def _lambdify(self) -> None:
        """Numeric coefficient functions of the parsed counts (closures: not pickled)."""
        self._num_fn = self.num.numeric()
        self._den_fn = self.den.numeric()
        self._row_fns = [(r.row.numeric(), r.sense) for r in self.rows]
        self._row_den_fns = [sympy.lambdify((TP, FP, FN, TN), r.den, "math") for r in self.rows]
        self._signs: dict[tuple[float, float], float] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        drop = ("_num_fn", "_den_fn", "_row_fns", "_row_den_fns", "_signs")
        return {k: v for k, v in state.items() if k not in drop}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._lambdify()

    def extra_repr(self) -> str:
        extra = f", constraints={self.constraints}" if self.constraints else ""
        consts = "".join(f", {k}={v}" for k, v in self.constants.items())
        return f"{self.formula!r}{extra}{consts}"

    # ---------------------------------------------------------------- degenerate batches

    def _rows_numeric(self, n_pos: float, n_neg: float) -> list[tuple[float, float, float, str]]:
        return [(*(float(v) for v in fn(n_pos, n_neg)), sense) for fn, sense in self._row_fns]

    def _undefined(self, n_pos: float, n_neg: float, near_zero: bool = False) -> str:
        """Why the ratio is undefined for these label counts ('' if it is defined); with
        ``near_zero``, also where the denominator comes within ``DEN_NEAR_ZERO (1 + n)`` of 0."""
        verts = _polygon_vertices((0.0, n_pos, 0.0, n_neg), self._rows_numeric(n_pos, n_neg))
        if len(verts) == 0:
            return NO_PREDICTION
        d0, d1, d2 = (float(v) for v in self._oriented(n_pos, n_neg)[1])
        den = d0 + d1 * verts[:, 0] + d2 * verts[:, 1]
        terms = abs(d0) + abs(d1) * verts[:, 0] + abs(d2) * verts[:, 1]
        floor = DEN_TOL * terms
        if near_zero:
            floor = np.maximum(floor, DEN_NEAR_ZERO * (1.0 + n_pos + n_neg))
        if (den <= floor).all():  # e.g. n_pos n_neg (balanced accuracy) with a class absent
            absent = " (no negative labels)" if n_neg == 0 else ""
            absent = " (no positive labels)" if n_pos == 0 else absent
            what = "0" if bool((den >= -floor).all()) else "0 or negative"
            return f"the denominator is {what} for every prediction{absent}"
        if (den <= floor).any():
            k = int(np.argmin(den - floor))
            return (
                f"the denominator reaches {den[k]:.3g} at TP = {verts[k, 0]:.3g}, "
                f"FP = {verts[k, 1]:.3g}"
            )
        return ""

    def _only_vacuous(self, k: int, n_pos: float, n_neg: float) -> bool:
        """Whether constraint ``k`` alone holds only where its own denominator is 0:
        ``"precision >= 1.2"`` is ``-0.2 TP - 1.2 FP >= 0``, met by ``TP = FP = 0`` alone,
        where precision is 0/0 (it was accepted, and forced every batch to predict nothing,
        while ``"recall >= 1.2"`` was refused: a reviewing helper, twentieth pass). The row's
        polygon is convex and the denominator affine in ``(TP, FP)`` on it, so it is 0
        everywhere on the polygon when it is 0 at its vertices."""
        verts = _polygon_vertices(
            (0.0, n_pos, 0.0, n_neg), self._rows_numeric(n_pos, n_neg)[k : k + 1]
        )
        if len(verts) == 0:  # no prediction meets it: refused below, with that reason
            return False
        den_fn = self._row_den_fns[k]
        dens = [float(den_fn(tp, fp, n_pos - tp, n_neg - fp)) for tp, fp in verts]
        return max(dens) <= TOL * (1.0 + n_pos + n_neg)

    def _undefined_constraint(self, n_pos: float, n_neg: float) -> str:
        """Why a constraint is undefined for these label counts ('' if none is).

        A constraint on a ratio is multiplied through by its denominator, and where that is 0
        for every prediction the row holds vacuously: ``"recall >= 0.9"`` is ``TP >= 0.9
        n_pos``, true on a batch without positives, whose recall is 0/0. The denominator is
        a polynomial with nonnegative coefficients in nonnegative counts, so it is 0 on the
        whole rectangle ``[0, n_pos] x [0, n_neg]`` exactly when it is 0 at the centre, where
        each count is positive unless its class is absent. A denominator that merely can
        reach 0 (precision's ``TP + FP`` at ``ŷ = 0``) leaves the constraint defined.
        """
        centre = (n_pos / 2.0, n_neg / 2.0, n_pos / 2.0, n_neg / 2.0)
        for row, den_fn in zip(self.rows, self._row_den_fns, strict=True):
            if float(den_fn(*centre)) <= 0.0:
                return (
                    f"the constraint {row.text!r} is undefined on this batch ({n_pos:g} "
                    f"positives, {n_neg:g} negatives): its denominator {row.den} is 0 for "
                    "every prediction"
                )
        return ""

    def _worst_value(self, n_pos: float, n_neg: float) -> float:
        """The metric's lowest value over the predictions of a batch with these label counts:
        the estimate of a degenerate batch.

        Every prediction gives a ``(TP, FP)`` in the rectangle ``[0, n_pos] x [0, n_neg]``
        (the constraints are ignored: on an infeasible batch none holds). Cut to where the
        denominator is nonnegative it is a polygon, and a linear-fractional function whose
        denominator is positive takes its minimum over a polygon at a vertex. A vertex where
        the denominator is 0 counts as :attr:`degenerate_value` (0.0, scikit-learn's
        ``zero_division=0``: precision with no predicted positive), and so does an empty
        polygon. For F-β, Jaccard, P@R and R@P the value is therefore exactly 0.0 (no true
        positive); for ``"-FP/(FP+TN)"`` it is -1 (every negative predicted positive), not the
        best value 0. A formula whose numerator is negative where its denominator is 0 has no
        lowest value (it falls without bound towards that vertex), and a feasible batch can
        then score below this estimate: ``"(TP-FN)/(TP+FP)"`` at 10 positives and 10 negatives
        gives -1 here and -8 on a feasible batch (a reviewing helper's probe).
        """
        num, den_c = self._oriented(n_pos, n_neg)
        (a0, a1, a2), (d0, d1, d2) = (tuple(float(v) for v in t) for t in (num, den_c))
        verts = _polygon_vertices((0.0, n_pos, 0.0, n_neg), [(d0, d1, d2, ">=")])
        den = d0 + d1 * verts[:, 0] + d2 * verts[:, 1]
        ok = den > TOL * (1.0 + n_pos + n_neg)
        values = (a0 + a1 * verts[ok, 0] + a2 * verts[ok, 1]) / den[ok]
        if not ok.all() or len(values) == 0:
            values = np.append(values, self.degenerate_value)
        return float(values.min()) + 0.0  # + 0.0: no -0.0 in the logs

    def degenerate_reason(self, scores: Any, labels: Any) -> str:
        """Why this batch is degenerate ('' if the LP is solved for it)."""
        scores, labels = binary_inputs(scores, labels)
        return self._degenerate(_squash(scores.detach()), labels)

    def _degenerate(self, phi: torch.Tensor, labels: torch.Tensor, margin: float = 0.0) -> str:
        """Why the batch is degenerate ('' if not); with ``margin`` (after a solver failure),
        also when the constraints cannot hold with ``margin * (1 + n)`` counts of slack or the
        denominator comes within ``DEN_NEAR_ZERO (1 + n)`` of 0."""
        n_pos = float(labels.double().sum())
        n_neg = labels.numel() - n_pos
        why = self._undefined(n_pos, n_neg, near_zero=bool(margin))
        if why:
            return (
                f"the metric is undefined on this batch ({n_pos:g} positives, {n_neg:g} "
                f"negatives): {why}"
            )
        why = self._undefined_constraint(n_pos, n_neg)
        if why:
            return why
        box = tuple(float(t) for t in _reachable_box(phi, labels))
        rows = _tightened(self._rows_numeric(n_pos, n_neg), margin * (1.0 + n_pos + n_neg))
        if len(_polygon_vertices(box, rows)) == 0:
            if margin:
                return f"{INFEASIBLE}: at the edge of feasibility, the solver could not decide it"
            return f"{INFEASIBLE}: no prediction allowed by the scores meets the constraints"
        return ""

    def _degenerate_estimate(
        self, scores: torch.Tensor, phi: torch.Tensor, labels: torch.Tensor, why: str
    ) -> torch.Tensor:
        """The metric's worst value on the batch; for an infeasible batch with the gradient of
        its constraints' best achievable slack (a phase 1), else with zero gradient.

        With zero gradient an infeasible batch teaches nothing, and at a random init most are
        infeasible: ``lpdsl train --losses r@p`` (alpha 0.8, digits) never left chance (test
        ROC-AUC 0.45) and P@R stalled at F1 0. Each row ``r0 + r1 TP + r2 FP >= 0`` is at most
        ``g = r0 + r1 TP* + r2 FP*`` over the box ``phi <= ŷ <= 1 + phi`` (``TP*``, ``FP*`` at
        the box's best corner for the row), differentiable in ``phi``; the value stays the
        metric's worst value (:meth:`_worst_value`) and the gradient is that of
        ``-sum relu(-g) / n``.
        """
        n_pos = float(labels.double().sum())
        n_neg = labels.numel() - n_pos
        worst = self._worst_value(n_pos, n_neg)
        if self._polygon_sign(n_pos, n_neg) is None:
            # no prediction meets the constraints at these label counts: at most
            # degenerate_value (the box's worst of (TP-5)/(FN-1) without positives is 5, a
            # loss below 0: a verifying helper)
            worst = min(worst, self.degenerate_value)
        self._check_range(worst, scores.dtype, "scores")
        value = zero_gradient_constant(scores, worst)
        if not why.startswith(INFEASIBLE):
            return value
        tp_lo, tp_hi, fp_lo, fp_hi = _reachable_box(phi, labels)  # as _degenerate decides it
        tp, fp = (tp_lo, tp_hi), (fp_lo, fp_hi)
        violation = tp_lo.new_zeros(())
        for r0, r1, r2, sense in self._rows_numeric(n_pos, n_neg):
            best = r0 + r1 * tp[r1 > 0] + r2 * fp[r2 > 0]
            violation = violation + torch.relu(-best)
            if sense == "==":
                least = r0 + r1 * tp[r1 <= 0] + r2 * fp[r2 <= 0]
                violation = violation + torch.relu(least)
        pull = -violation / (n_pos + n_neg)
        return value + (pull - pull.detach()).to(value.dtype)

    # ---------------------------------------------------------------- the model

    def _build(self, key: Any) -> CompiledModel:
        n, sign = key
        num, den = (self.num, self.den) if sign > 0.0 else (self.num.negated(), self.den.negated())
        lower = lp.Parameter(n, name="lower")  # max(phi, 0): see prediction_box
        upper = lp.Parameter(n, name="upper")  # min(1 + phi, 1)
        y = lp.Parameter(n, name="labels")
        env_n = {N_POS: y.sum(), N_NEG: (1 - y).sum()}
        den_n = 1 if den.has_counts() else _affine_to_dsl(den, env_n)
        if _is_one(den_n):
            # the compiler applies Charnes-Cooper (z = yhat t, t = 1 / den) to num / den
            yhat = lp.Variable(n, name="yhat")
            scale: Any = 1
        else:
            # den is a positive function of the label counts alone (R@P: n_pos): Charnes-
            # Cooper's variables with the constant t = 1 / den, z = yhat / den, the length
            # scale of the other ratio models (docs/metrics.md, "Length scale")
            yhat = lp.Variable(n, name="z")
            scale = den_n
        env = {TP: y @ yhat, FP: (1 - y) @ yhat, **env_n}
        if _is_one(scale):
            constraints, counts = [yhat >= lower, yhat <= upper], env
        else:  # the box and the rows in the counts of yhat = den z, as for the yhat models
            constraints = [scale * yhat >= lower, scale * yhat <= upper]
            counts = {**env, TP: scale * env[TP], FP: scale * env[FP]}
        for row in self.rows:
            expr = _affine_to_dsl(row.row, counts)
            constraints.append(expr == 0 if row.sense == "==" else expr >= 0)
        parameters = [lower, upper, y]
        if den.has_counts():
            # the metric near its optimum, from below (_estimate): the Charnes-Cooper LP's
            # cost num - estimate * den has the same solution in fewer Newton steps
            estimate = lp.Parameter(name="kappa")
            ratio = _affine_to_dsl(num, env) / _affine_to_dsl(den, env)
            objective = lp.Maximize(ratio, estimate=estimate)
            parameters.append(estimate)
        else:  # num / den = num(TP/den, FP/den) with its constant over den: a plain LP
            objective = lp.Maximize(_affine_to_dsl(num, env, scale))
        problem = lp.Problem(objective, constraints)
        return CompiledModel(problem, parameters, [yhat], solve_options=self.solve_options)

    def _values(self, phi: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
        """The model's parameter values for ``phi = tanh(scores)``: the box, the labels and,
        for a ratio model, the estimate of the metric (:meth:`_estimate`)."""
        lower, upper = prediction_box(phi)
        if not self.den.has_counts():
            return [lower, upper, labels]
        return [lower, upper, labels, self._estimate(lower.detach(), upper.detach(), labels)]

    def _estimate(
        self, lower: torch.Tensor, upper: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """The metric at a corner of the box that meets the constraint rows, less a tenth of
        its size: the lower corner ``ŷ = max(phi, 0)``, or, where a row rules it out (P@R's
        recall row, usually), the upper corner ``ŷ = min(1 + phi, 1)``; 0 where neither meets
        the rows or the denominator is not positive there. Any value gives the LP's solution
        (Charnes-Cooper with Dinkelbach's shift, docs/compiler.md); from below and near the
        optimum, the Newton solver takes fewer steps: 8 seeded batches of n = 64 (256), F1
        35 -> 24 (50 -> 24) steps, F2 69 -> 46 (108 -> 46), Jaccard 40 -> 24 (55 -> 25), P@R
        0.8 38 -> 29 (37 -> 24) at the upper corner."""
        zero = lower.new_zeros(())
        corner = lower
        if self.rows:
            n = (float(labels.sum()), float((1 - labels).sum()))
            rows = self._rows_numeric(*n)
            corners = torch.stack([lower, upper])
            counts = torch.stack([corners @ labels, corners @ (1 - labels)], -1)
            # (tolist, not numpy: under torch.func the counts are wrapped tensors, which
            # numpy() refuses even unwrapped)
            meets = _on_rows(rows, np.array(counts.tolist()), 1.0 + max(n))
            if not meets.any():
                return zero
            corner = corners[int(np.argmax(meets))]
        n_pos, n_neg = labels.sum(), (1 - labels).sum()
        tp, fp = labels @ corner, (1 - labels) @ corner
        (a0, a1, a2), (b0, b1, b2) = self._oriented(n_pos, n_neg)
        den = b0 + b1 * tp + b2 * fp
        value = (a0 + a1 * tp + a2 * fp) / torch.where(den > 0.0, den, 1.0)
        kappa = value - ESTIMATE_MARGIN * value.abs()

        # where kappa den outweighs num, the standard form leaves the shift out
        # (CompiledProblem._shifted: TP + 1e-14 over TP + FP + 1e-14 on a batch without
        # positives grew the cost 3.6e14 times, and a point 0.1 below the optimum was certified)
        return torch.where(den > 0.0, kappa, zero)

    def _prediction(self, value: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``ŷ`` from the value of the model's variable: itself, or ``den · z`` for a
        denominator of the label counts alone (:meth:`_build`); its values in ``[0, 1]``, its
        gradient the unclamped one's. The LP's ``ŷ`` meets its bounds to rounding: at ``ŷ = 1 +
        2e-16`` on a perfect batch F1 and Jaccard read 1 + 2e-16, a loss below 0 (a reviewing
        helper, 22nd pass)."""
        if not self.den.has_counts():
            labels = labels.to(value.dtype)
            den, _, _ = self._oriented(labels.sum(), (1 - labels).sum())[1]
            value = value * den
        return value + (value.detach().clamp(0.0, 1.0) - value.detach())

    def _model(self, labels: torch.Tensor) -> CompiledModel:
        """The compiled model of this batch's size and orientation (:meth:`_sign`)."""
        n_pos = float(labels.double().sum())  # exact: bfloat16 ones sum 301 to 300
        key = (labels.numel(), self._sign(n_pos, labels.numel() - n_pos))
        return self._cache.get(key, self._build)

    def problem_for(self, scores: Any, labels: Any) -> Any:
        """The :class:`lpdsl.Problem` for this batch size (parameters ``lower``, ``upper``,
        ``labels``: the box ``lower <= ŷ <= upper`` of :func:`prediction_box`).

        Its variable is ``yhat`` (``ŷ``), or, where the denominator depends on the label
        counts alone (recall at precision: ``n_pos``), ``z = ŷ / den``: Charnes–Cooper's
        variables with the constant ``t = 1 / den``, the length scale of the other ratio
        models, on which the solver takes a third of the Newton steps (docs/metrics.md,
        "Length scale"). The LP's value is the metric either way.

        Its parameter values are :meth:`parameter_values` ``(scores, labels)``:
        ``problem.to_cvxpy(*loss.parameter_values(scores, labels))``.

        Raises:
            DSLError: on a degenerate batch (no LP is solved; the reason is in the message).
        """
        require_lp(self.degenerate_reason(scores, labels))
        _, labels = binary_inputs(scores, labels)
        return self._model(labels).problem

    def parameter_values(self, scores: Any, labels: Any) -> list[torch.Tensor]:
        """``[max(phi, 0), min(1 + phi, 1), labels]`` with ``phi = tanh(scores)``, and for a
        ratio model the estimate of its optimum (:meth:`_estimate`): the values of
        ``problem_for(...).parameters()``, in float64 (float32 on MPS) as the loss solves them
        whatever the scores' dtype."""
        scores, labels = binary_inputs(scores, labels)
        return self._values(*_wide(_squash(scores.detach()), labels))

    def metric_at(self, yhat: Any, labels: Any) -> torch.Tensor:
        """The formula evaluated at (relaxed) predictions ``yhat`` ``(n,)`` for ``labels``
        ``(n,)`` in {0, 1}: the estimate at the LP's ``ŷ`` (or at another solver's, e.g.
        cvxpylayers'); differentiable in ``yhat``.

        Raises:
            DSLError: on shapes that differ, NaN/Inf in ``yhat`` or values outside ``[0,
                1]`` (beyond ``YHAT_SLACK``), labels outside {0, 1} (F1 read 1.14 for labels
                {0, 2}: a reviewing helper's probe), or a denominator of 0 at ``yhat``, where
                the metric is undefined (precision at ``yhat = 0``).
        """
        yhat, labels = binary_inputs(yhat, labels, "yhat")
        # relaxed predictions lie in [0, 1]: F1 at yhat = 2 y read 1.33 (a verifying helper);
        # another solver's inaccuracy just outside is kept
        low, high = float(yhat.detach().min()), float(yhat.detach().max())
        if low < -YHAT_SLACK or high > 1.0 + YHAT_SLACK:
            raise DSLError(
                f"metric_at: yhat holds values in [{low:.3g}, {high:.3g}]; relaxed predictions "
                "lie in [0, 1] (probabilities, not scores: pass torch.sigmoid(scores) or an "
                "LP's yhat)"
            )
        # in float64, cast once: float16 coefficients (n_pos n_neg) overflowed (a probing helper)
        wide = wide_float(yhat.dtype, yhat.device)
        value = self._metric_at(yhat.to(wide), labels.to(yhat.device, wide))
        if not bool(torch.isfinite(value.detach())):
            raise DSLError(
                f"metric_at: the formula {self.formula!r} has a denominator of 0 at this "
                "yhat (e.g. precision with no predicted positive): the metric is undefined "
                "there"
            )
        return self._narrowed(value, yhat.dtype, "yhat")

    def _metric_at(self, yhat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`metric_at` on validated inputs."""
        tp = labels @ yhat
        fp = (1 - labels) @ yhat
        n_pos, n_neg = labels.sum(), (1 - labels).sum()
        a0, a1, a2 = self._num_fn(n_pos, n_neg)  # (the ratio is the same in either orientation)
        b0, b1, b2 = self._den_fn(n_pos, n_neg)
        return (a0 + a1 * tp + a2 * fp) / (b0 + b1 * tp + b2 * fp)

    def solution(self, scores: Any, labels: Any) -> dict[Any, torch.Tensor]:
        """The optimal value of :meth:`problem_for`'s variable, keyed by it: the relaxed
        predictions ``ŷ``, or ``z = ŷ / den`` where the denominator depends on the label
        counts alone (recall at precision, balanced accuracy, accuracy, ...: the variable is
        then named ``z``; ``ŷ = den · z``, and :meth:`metric_at` takes ``ŷ``, not ``z``:
        :meth:`predictions` gives ``ŷ`` in every case). ``ŷ`` comes in the scores' dtype,
        ``z`` in float64 (float32 on MPS), as solved: ``1 / den`` is ``1 / (n_pos n_neg)`` for
        balanced accuracy, which half precision flushes to 0.

        Raises:
            DSLError: on a degenerate batch (no LP is solved; the reason is in the message).
        """
        scores, labels = binary_inputs(scores, labels)
        variable, value, _ = self._solved(scores, labels)
        # z = ŷ / den stays in float64: den = n_pos n_neg flushed it to 0 in float16 (a
        # verifying helper: balanced accuracy read 0.5 from it for an estimate of 0.85)
        return {variable: value.to(scores.dtype) if self.den.has_counts() else value}

    def _solved(self, scores: torch.Tensor, labels: torch.Tensor) -> tuple[Any, ...]:
        """The model's variable, its optimal value and the labels, in float64 (``_wide``)."""
        phi = _squash(scores)
        require_lp(self._degenerate(phi.detach(), labels))
        model = self._model(labels)
        phi_w, labels_w = _wide(phi, labels)
        (value,) = model.solve(*self._values(phi_w, labels_w))
        return model.variables[0], value, labels_w

    def predictions(self, scores: Any, labels: Any) -> torch.Tensor:
        """The LP's relaxed predictions ``ŷ`` ``(n,)`` for this batch, in ``[0, 1]``, whatever
        variable its model is solved in (``den · z`` where that is ``z``: :meth:`solution`):
        what :meth:`metric_at` takes, so ``metric_at(predictions(s, y), y)`` is the estimate.
        Differentiable in ``scores``. (With only ``z``, ``metric_at(z)`` read 0.506 for an
        estimate of 0.713: a reviewing helper's program.)

        Raises:
            DSLError: on a degenerate batch (no LP is solved; the reason is in the message).
        """
        scores, labels = binary_inputs(scores, labels)
        # in float64, cast once: in float16 den = n_pos n_neg (balanced accuracy at n = 600)
        # overflowed, and z = ŷ / den was subnormal: all-NaN predictions (a probing helper)
        _, value, labels_w = self._solved(scores, labels)
        return self._prediction(value, labels_w).to(scores.dtype)

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def estimate(self, scores: Any, labels: Any) -> torch.Tensor:
        """The LP estimate of the metric (differentiable in ``scores``)."""
        scores, labels = binary_inputs(scores, labels)
        phi = _squash(scores)
        why = self._degenerate(phi.detach(), labels)
        if why:
            return self._degenerate_estimate(scores, phi, labels, why)
        phi_w, labels_w = _wide(phi, labels)
        try:
            (value,) = self._model(labels).solve(*self._values(phi_w, labels_w))
        except SolverError:
            # At the edge of feasibility (a P@R batch whose best recall is alpha minus 1e-5
            # of a count) the polygon test and the solver's tolerance disagree: the solver
            # ends MAX_ITER. Such a batch is degenerate; a failure elsewhere is reported.
            why = self._degenerate(phi.detach(), labels, MARGIN)
            if why:
                return self._degenerate_estimate(scores, phi, labels, why)
            raise
        value = self._metric_at(self._prediction(value, labels_w), labels_w)
        return self._narrowed(value, scores.dtype, "scores")

    def _narrowed(self, value: torch.Tensor, dtype: torch.dtype, name: str) -> torch.Tensor:
        """``value`` (float64) in ``dtype``, refusing one beyond its range: ``1e5*TP/(TP+FN)``
        of float16 scores was a silent inf, and ``metric_at`` called it "a denominator of 0"
        (a verifying helper, 25th pass). (One read of the value: the test costs a loss one
        operation a step.)"""
        self._check_range(float(value.detach()), dtype, name)
        return value.to(dtype)

    def _check_range(self, value: float, dtype: torch.dtype, name: str) -> None:
        """Refuse a finite metric value beyond ``dtype``'s range (:meth:`_narrowed`)."""
        if math.isfinite(value) and abs(value) > torch.finfo(dtype).max:
            raise DSLError(
                f"the formula {self.formula!r} has the value {value:.6g} here, beyond "
                f"{dtype}'s range (largest {torch.finfo(dtype).max:.5g}): pass {name} in "
                + ("float64" if dtype == torch.float32 else "float32 or float64")
                + ", or write the formula on a smaller scale"
            )


def _affine_to_dsl(aff: Affine, env: dict[sympy.Symbol, Any], scale: Any = 1) -> Any:
    """The DSL expression of ``aff`` (a number if it is constant), its constant term divided
    by ``scale`` (the counts in ``env`` are then those of ``ŷ / scale``: ``aff / scale``)."""
    out: Any = 0
    for coef, sym in ((aff.c0, None), (aff.c_tp, TP), (aff.c_fp, FP)):
        if coef == 0:
            continue
        term = _poly_to_dsl(coef, env)
        if sym is not None:
            term = env[sym] if _is_one(term) else term * env[sym]
        elif not _is_one(scale):
            term = term / scale
        out = term if _is_zero(out) else out + term
    return out


def _is_one(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 1


def _is_zero(x: Any) -> bool:
    return isinstance(x, (int, float)) and x == 0


def _poly_to_dsl(expr: sympy.Expr, env: dict[sympy.Symbol, Any]) -> Any:
    """A polynomial in (n_pos, n_neg) as DSL arithmetic (numbers stay Python floats)."""
    if expr.is_Number:
        return float(expr)
    if expr.is_Symbol:
        return env[expr]
    if expr.is_Add:
        out: Any = 0
        for arg in expr.args:
            term = _poly_to_dsl(arg, env)
            out = term if _is_zero(out) else out + term
        return out
    if expr.is_Mul:
        out = 1
        for arg in expr.args:
            factor = _poly_to_dsl(arg, env)
            out = factor if _is_one(out) else out * factor
        return out
    if expr.is_Pow and expr.exp.is_Integer and int(expr.exp) > 0:
        base = _poly_to_dsl(expr.base, env)
        out = base
        for _ in range(int(expr.exp) - 1):
            out = out * base
        return out
    raise DSLError(f"cannot express the coefficient {expr} as an LP coefficient")


# --------------------------------------------------------------------------------------------
# presets (App. A.2.1–A.2.3)


#: The range of ``FBetaLoss``'s beta: the LP's coefficients spread by ``beta**2``, and beyond
#: it the solver's tolerances stop resolving them (docs/metrics.md, "Range of β").
BETA_RANGE = (1e-4, 1e4)


class FBetaLoss(RatioMetricLoss):
    """``1 - F_beta`` by the linear-fractional LP of paper §2.4 and App. A.2.1–A.2.2.

    ``F_beta = (1 + beta^2) TP / ((1 + beta^2) TP + beta^2 FN + FP)``; the LP maximises it over
    ``phi <= ŷ <= 1 + phi, 0 <= ŷ <= 1`` (``phi = tanh(scores)``). Equals
    :func:`sklearn.metrics.fbeta_score` of ``scores > 0`` at saturated scores. A batch without
    positive labels is degenerate (estimate 0, zero gradient).

    Args:
        beta: Weight of recall relative to precision, in ``BETA_RANGE`` (1 gives F1).
        **solve_options: Passed to the solver.
    """

    def __init__(self, beta: float = 1.0, **solve_options: Any) -> None:
        beta = check_positive_float("beta", beta)
        lo, hi = BETA_RANGE
        if not lo <= beta <= hi:
            # measured: at beta = 1e-5 or 1e5 10-90 % of batches end MAX_ITER (SolverError)
            raise DSLError(
                f"Expected argument `beta` to lie in [{lo:g}, {hi:g}] but got {beta!r}: the "
                "F-beta LP's coefficients spread by beta**2, beyond what the solver resolves. "
                "For beta -> 0 (precision) use PrecisionAtRecallLoss(alpha); for beta -> "
                'infinity (recall) RatioMetricLoss("recall")'
            )
        super().__init__(
            "(1 + beta**2)*TP / ((1 + beta**2)*TP + beta**2*FN + FP)",
            solve_options=solve_options,
            beta=beta,
        )
        self.beta = beta

    def extra_repr(self) -> str:
        """Its own argument: RatioMetricLoss's repr is a call this constructor rejects."""
        return f"beta={self.beta}"


class JaccardLoss(RatioMetricLoss):
    """``1 - Jaccard`` (IoU), ``TP / (TP + FP + FN)``, by the LP of App. A.2.2.

    Equals :func:`sklearn.metrics.jaccard_score` of ``scores > 0`` at saturated scores. A batch
    without positive labels is degenerate (estimate 0, zero gradient).

    Args:
        **solve_options: Passed to the solver.
    """

    def __init__(self, **solve_options: Any) -> None:
        super().__init__("TP / (TP + FP + FN)", solve_options=solve_options)

    def extra_repr(self) -> str:
        """No arguments (RatioMetricLoss's repr shows the formula, which this one fixes)."""
        return ""


class PrecisionAtRecallLoss(RatioMetricLoss):
    """``1 - `` precision at recall ``>= alpha`` (App. A.2.3, eqs. (15)–(16)).

    ``maximize TP / (TP + FP)  s.t.  TP >= alpha (TP + FN)``. At saturated scores whose
    predictions reach recall ``alpha`` it equals their precision; when no prediction allowed
    by the scores reaches the recall (the gradient then raises the recall reachable, through
    ``tanh``: it vanishes at saturated scores, docs/metrics.md), or the
    batch has no positive label (zero gradient), the batch is degenerate (estimate 0).

    Args:
        alpha: The minimum recall, in (0, 1).
        **solve_options: Passed to the solver.
    """

    def __init__(self, alpha: float, **solve_options: Any) -> None:
        alpha = check_fraction("alpha", alpha)
        try:
            super().__init__(
                "TP / (TP + FP)", ["recall >= alpha"], solve_options=solve_options, alpha=alpha
            )
        except DSLError as err:  # the message spoke of a ratio and constraints never written
            if "not well posed" not in str(err):
                raise
            raise DSLError(
                f"Expected argument `alpha` of PrecisionAtRecallLoss to be at least ~1e-8 but "
                f"got {alpha!r}: a recall bound this small keeps precision's denominator TP + "
                "FP away from 0 by less than rounding"
            ) from None
        self.alpha = alpha

    def extra_repr(self) -> str:
        """Its own argument: RatioMetricLoss's repr is a call this constructor rejects."""
        return f"alpha={self.alpha}"


class RecallAtPrecisionLoss(RatioMetricLoss):
    """``1 - `` recall at precision ``>= alpha`` (App. A.2.3).

    ``maximize TP / (TP + FN)  s.t.  TP >= alpha (TP + FP)``; the denominator is the number of
    positives, so this is a plain LP, in ``z = ŷ / n_pos`` (:meth:`problem_for`). Degenerate
    (estimate 0) without positive labels (zero gradient) or when no prediction allowed by the
    scores reaches precision ``alpha`` (the gradient then raises the precision reachable,
    through ``tanh``: it vanishes at saturated scores, docs/metrics.md).

    Args:
        alpha: The minimum precision, in (0, 1).
        **solve_options: Passed to the solver.
    """

    def __init__(self, alpha: float, **solve_options: Any) -> None:
        alpha = check_fraction("alpha", alpha)
        super().__init__(
            "TP / (TP + FN)", ["precision >= alpha"], solve_options=solve_options, alpha=alpha
        )
        self.alpha = alpha

    def extra_repr(self) -> str:
        """Its own argument: RatioMetricLoss's repr is a call this constructor rejects."""
        return f"alpha={self.alpha}"
