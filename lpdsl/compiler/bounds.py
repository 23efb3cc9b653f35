"""Pass 3: variable bounds -> rows.

SPEC §2: the standard form has free variables, so ``lb <= x <= ub`` (with ``nonneg`` already
folded into ``lb`` by the declaration layer) becomes rows ``-x + lb <= 0`` and ``x - ub <= 0``
for the finite entries only (an infinite bound is no constraint). This pass runs before
Charnes–Cooper so that bounds are scaled by ``t`` like every other row (``lb t <= y``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lpdsl.compiler import nodes
from lpdsl.compiler.reduction import CanonProblem, Reduction
from lpdsl.compiler.templates import Block, Template


def bound_rows(var: Any, bound: np.ndarray | None, sign: float) -> Template | None:
    """``sign * (x - bound) <= 0`` on the finite entries of ``bound`` (``None``: no row)."""
    if bound is None:
        return None
    flat = np.broadcast_to(np.asarray(bound, dtype=np.float64), var.shape).reshape(-1)
    idx = np.flatnonzero(np.isfinite(flat)).astype(np.int64)
    if idx.size == 0:
        return None
    k = idx.size
    block = Block(np.arange(k, dtype=np.int64), var, idx, np.full(k, sign))
    return Template((k,), [block], nodes.constant(-sign * flat[idx]))


class BoundsToRows(Reduction):
    """Adds one row per finite bound entry of every variable (user and auxiliary)."""

    def accepts(self, problem: CanonProblem) -> bool:
        return any(
            v.attrs.get("lb") is not None or v.attrs.get("ub") is not None
            for v in problem.variables
        )

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        rows = []
        for v in problem.variables:
            for bound, sign in ((v.attrs.get("lb"), -1.0), (v.attrs.get("ub"), 1.0)):
                row = bound_rows(v, bound, sign)
                if row is not None:
                    rows.append(row)
        return problem.copy(ineqs=[*problem.ineqs, *rows]), None
