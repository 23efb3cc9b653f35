"""Pass 5: equalities -> two opposite rows.

SPEC §2 fixes one standard form, ``A x <= b`` with free ``x``, so that the Newton solver
(Mangasarian's exterior penalty, paper §3) sees a single kind of row: ``h == 0`` becomes
``h <= 0`` and ``-h <= 0``.
"""

from __future__ import annotations

from typing import Any

from lpdsl.compiler.reduction import CanonProblem, Reduction
from lpdsl.compiler.templates import negate


class EqualitiesToRows(Reduction):
    """Appends ``h`` and ``-h`` to the inequality rows for every equality ``h == 0``."""

    def accepts(self, problem: CanonProblem) -> bool:
        return bool(problem.eqs)

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        rows = list(problem.ineqs)
        for h in problem.eqs:
            rows.extend((h, negate(h)))
        return problem.copy(ineqs=rows, eqs=[]), None
