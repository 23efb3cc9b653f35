"""Separable nonnegative matrix factorisation as an LP (paper App. A.3, eq. (17)).

Recht, Ré, Tropp and Bittorf (2012), "Factoring nonnegative matrices with linear programs":
for a nonnegative ``(s, w)`` matrix ``V`` whose rows sum to 1 and which admits a rank-``r``
*separable* factorisation (every row is a convex combination of ``r`` of its rows, the
anchors), the LP::

    minimize_C  p · diag(C)
    subject to  C V = V,  trace(C) = r,  C_jj <= 1,  C_ij <= C_jj,  C >= 0

with distinct weights ``p`` puts ``C_jj = 1`` on ``r`` anchor rows. Then ``W = V[anchors]``,
``F = C[:, anchors]`` and ``V = C V = F W``. ``C`` has ``s^2`` entries and ``C V = V`` alone
``s·w`` rows with ``s`` nonzeros each, so the model is solved with the sparse layout: the
dense constraint matrix is what made the paper run out of memory at ``s > 20``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import lpdsl as lp
from lpdsl.errors import DSLError, SolverError
from lpdsl.metrics._base import (
    CachedModels,
    CompiledModel,
    as_float_array,
    as_float_tensor,
    check_finite,
)
from lpdsl.validation import check_positive_int, eager


def nmf_problem(s: int, w: int, rank: int, p: np.ndarray) -> CompiledModel:
    """Declare LP (17) for an ``(s, w)`` matrix and the given rank and weights ``p (s,)``."""
    V = lp.Parameter((s, w), name="V", nonneg=True)
    C = lp.Variable((s, s), name="C", nonneg=True)
    idx = np.arange(s)
    diag = C[idx, idx]
    problem = lp.Problem(
        lp.Minimize(p @ diag),
        [
            C @ V == V,
            diag.sum() == rank,
            diag <= 1,
            diag.reshape((1, s)) >= C,
        ],
    )
    return CompiledModel(problem, [V], [C], layout="sparse")


#: How far from 0/1 the optimal ``diag(C)`` may lie for its largest entries to be anchors.
VERTEX_TOL = 1e-6
#: The same where the LP is solved in float32 arithmetic (``compute_dtype``, tol 1e-5).
VERTEX_TOL_F32 = 1e-3


class NMF(CachedModels):
    """Rank-``r`` separable NMF ``V ≈ F @ W`` by the LP of paper App. A.3, eq. (17).

    ``F, W = NMF(rank)(V)`` for a nonnegative ``(s, w)`` tensor ``V`` whose rows sum to 1:
    solves::

        min_C  p · diag(C)   s.t.  C V = V,  tr(C) = rank,  C_jj <= 1,  C_ij <= C_jj,  C >= 0

    and returns ``W = V[anchors]`` (``(rank, w)``, the rows with the ``rank`` largest
    ``C_jj``, in increasing row order) and ``F = C[:, anchors]`` (``(s, rank)``).
    Differentiable in ``V`` through the LP. The model is compiled once per ``(s, w)``.

    Args:
        rank: The number of anchors ``r >= 1``.
        p: The distinct objective weights ``(s,)``; default ``1 + j / s`` for row ``j``
            (distinct values select a vertex in exact arithmetic; Recht et al. draw them at
            random). Values within ~1e-10 of each other on duplicated rows of ``V`` can
            leave the optimum off a vertex: that is refused (:class:`SolverError`), not
            returned as anchors.
        **solve_options: Passed to :class:`lpdsl.LPLayer` (default ``max_iter=3000``).

    Raises:
        SolverError: when ``V`` has no exact rank-``r`` separable factorisation (the LP is
            infeasible). With ``strict=False`` both ``F`` and ``W`` are NaN instead.
    """

    is_differentiable = True
    failure_hint = (
        ". For NMF, INFEASIBLE means V has no exact separable factorisation of this rank "
        "(with float32 data, that rounding broke one: pass float64); MAX_ITER on a separable "
        "V usually means float32 data (pass float64) or skewed mixing weights "
        "(docs/metrics.md, NMF)"
    )

    def __init__(self, rank: int, p: Any = None, **solve_options: Any) -> None:
        # LP (17) is highly degenerate (many optimal C share the anchors' diagonal); the
        # Newton backend needs more than its default 500 iterations on it (measured: s = 8
        # needs ~600).
        super().__init__({"max_iter": 3000, **solve_options})
        self.rank = check_positive_int("rank", rank)
        self.p = None if p is None else as_float_array("p", p)
        if self.p is not None and not np.isfinite(self.p).all():
            raise DSLError(f"Expected argument `p` to be finite but got {self.p.tolist()}")
        if self.p is not None and (self.p.ndim != 1 or len(np.unique(self.p)) != self.p.size):
            raise DSLError(
                f"Expected argument `p` to be a 1-D vector of distinct weights but got shape "
                f"{self.p.shape} with {self.p.size - len(np.unique(self.p))} repeated values"
            )

    def extra_repr(self) -> str:
        return f"rank={self.rank}"

    def _input(self, V: Any) -> torch.Tensor:
        V = as_float_tensor(V, "V")
        if V.ndim != 2 or 0 in V.shape:  # no column: a raw "amin(): Expected reduction dim"
            raise DSLError(
                f"Expected `V` to be a non-empty 2-D (s, w) matrix but got shape {tuple(V.shape)}"
            )
        s = V.shape[0]
        if not 1 <= self.rank <= s:
            raise DSLError(
                f"Expected argument `rank` to be at most the number of rows s = {s} of `V` "
                f"{tuple(V.shape)} but got {self.rank}"
            )
        check_finite(V, "V")
        # entries down to -tol are rounding (the tolerance of the row sums below): NMF's own
        # factors carry such noise (F.min() = -8e-18), and F @ W, separable by construction,
        # was refused (a reviewing helper's run of examples/nmf_activations.py)
        tol = 1e-4 if V.dtype == torch.float32 else 1e-8
        low = V.detach().amin()
        if bool(low < -tol):
            i, j = divmod(int(V.detach().argmin()), V.shape[1])
            raise DSLError(
                f"Expected `V` {tuple(V.shape)} to be nonnegative but V[{i}, {j}] = "
                f"{float(low):.6g}"
            )
        V = V.clamp_min(0.0) if bool(low < 0) else V
        # entries below the normal range are 0 to a row that sums to 1: as such they made LP
        # rows no power of two brings to unit norm, which the solver refuses (a verifying
        # helper, 25th pass)
        # (in the arithmetic the LP is solved in, where that is narrower: compute_dtype)
        work = self.solve_options.get("compute_dtype") or V.dtype
        tiny = max(torch.finfo(V.dtype).tiny, torch.finfo(work).tiny)
        V = torch.where(V.abs() < tiny, 0.0, V)
        rows = V.detach().sum(1)
        empty = (V.detach() == 0).all(1)
        if bool(empty.any()):  # normalising it, as the advice below says, gives NaN
            raise DSLError(
                f"Expected the rows of `V` {tuple(V.shape)} to sum to 1 but row "
                f"{int(empty.nonzero()[0, 0])} is all zero; drop zero rows first "
                "(e.g. V[V.sum(1) > 0])"
            )
        if bool(((rows - 1).abs() > tol).any()):
            k = int((rows - 1).abs().argmax())
            raise DSLError(
                f"Expected the rows of `V` {tuple(V.shape)} to sum to 1 but row {k} sums to "
                f"{float(rows[k]):.6g}; normalise with `V / V.sum(1, keepdim=True)`"
            )
        if self.p is not None and self.p.size != s:
            raise DSLError(
                f"Expected argument `p` to have {s} entries (one per row of `V`) but got "
                f"{self.p.size}"
            )
        return V

    def _model(self, s: int, w: int) -> CompiledModel:
        def build(key: Any) -> CompiledModel:
            p = 1.0 + np.arange(s) / s if self.p is None else self.p
            model = nmf_problem(s, w, self.rank, p)
            model.solve_options = self.solve_options
            return model

        return self._cache.get((s, w), build)

    def problem_for(self, V: Any) -> Any:
        """The :class:`lpdsl.Problem` (17) for this shape; its one parameter's value is ``V``."""
        V = self._input(V)
        return self._model(*V.shape).problem

    def parameter_values(self, V: Any) -> list[torch.Tensor]:
        """``[V]``: the values of ``problem_for(V).parameters()``."""
        return [self._input(V).detach()]

    def _solve(self, V: torch.Tensor) -> tuple[Any, torch.Tensor]:
        """The optimal ``C`` for a validated ``V``, and the variable it belongs to."""
        model = self._model(*V.shape)
        (C,) = model.solve(V)
        return model.variables[0], C

    def solve_c(self, V: Any) -> torch.Tensor:
        """The LP's optimal ``C`` ``(s, s)`` (differentiable in ``V``)."""
        return self._solve(self._input(V))[1]

    def solution(self, V: Any) -> dict[Any, torch.Tensor]:
        """``{C: optimal C}`` keyed by the variable of :meth:`problem_for`."""
        var, C = self._solve(self._input(V))
        return {var: C}

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def forward(self, V: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``F (s, rank), W (rank, w)`` with ``V ≈ F @ W`` and ``W`` = the anchor rows of V."""
        V = self._input(V)
        _, C = self._solve(V)
        diag = C.diagonal().detach()
        failed = bool(diag.isnan().any())  # strict=False and the LP failed
        if not failed:
            anchors = torch.topk(diag, self.rank).indices.sort().values
            # an optimum off a vertex splits an anchor's weight between rows: p values
            # within 1e-10 of each other on duplicated rows gave diag(C) = (0.80, 0.20, ...)
            # and F @ W 0.1 off V, silently (a reviewing helper's probe)
            chosen = torch.zeros_like(diag, dtype=torch.bool).index_fill(0, anchors, True)
            off = (diag - chosen.to(diag.dtype)).abs().amax()
            wide = self.solve_options.get("compute_dtype") in (None, torch.float64)
            if bool(off > (VERTEX_TOL if wide else VERTEX_TOL_F32)):
                if self.solve_options.get("strict", True):
                    raise SolverError(
                        f"NMF: the LP's optimum is not a vertex: diag(C) is {float(off):.3g} "
                        "away from 0/1, so no rank anchors can be picked (F @ W would not be V). "
                        "The weights p tie on duplicated rows of V: pass p with distinct values "
                        "further apart, or drop duplicate rows"
                    )
                failed = True
        if failed:  # NaN factors, kept on V's and C's graph with zero gradient (LPLayer's rows)
            nan = torch.tensor(float("nan"), dtype=V.dtype, device=V.device)
            return torch.where(nan.isnan(), nan, C[:, : self.rank]), torch.where(
                nan.isnan(), nan, V[: self.rank]
            )
        # C >= 0 holds to the solver's rounding (entries of -1e-18 where C is 0): F is
        # returned nonnegative, as NMF's factors are
        return C[:, anchors].clamp_min(0.0), V[anchors]
