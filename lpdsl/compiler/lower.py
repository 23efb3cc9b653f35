"""Pass 2: expression trees -> affine templates (coefficient maps).

After this pass every row and the objective is a :class:`~.templates.Template`; no tree
operation is left for call time except evaluating parameter-only subtrees.
"""

from __future__ import annotations

from typing import Any

from lpdsl.compiler import templates
from lpdsl.compiler.reduction import CanonProblem, Reduction


class BuildTemplates(Reduction):
    """Builds the templates of all rows and of the objective, sharing common subtrees."""

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        memo: dict[int, templates.Template] = {}

        def build(e: Any) -> templates.Template:
            return templates.build(e, memo)

        out = problem.copy(
            objective=None if problem.objective is None else build(problem.objective),
            ratio=None if problem.ratio is None else tuple(build(e) for e in problem.ratio),
            ineqs=[build(e) for e in problem.ineqs],
            eqs=[build(e) for e in problem.eqs],
        )
        return out, None
