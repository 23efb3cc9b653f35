"""The pass protocol (CVXPY's ``Reduction`` / ``Chain``) and the problem the passes rewrite.

Each pass maps a :class:`CanonProblem` to a simpler one and returns the data its inverse
needs, so a solution of the final LP maps back to the user's variables by inverting the
passes in reverse order (``recover``). Only Charnes–Cooper changes the solution's meaning
(``x = y / t``); the other inverses drop auxiliary columns or are the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch


@dataclass
class CanonProblem:
    """A problem in the middle of compilation.

    Attributes:
        sense: ``"min"`` or ``"max"``.
        objective: a scalar expression (tree or :class:`~.templates.Template`).
        ratio: ``(num, den)`` when the objective is linear-fractional, else ``None``; then
            ``objective`` is unused until Charnes–Cooper sets it. ``(num, den, estimate)``
            where the objective has an estimate of the ratio (charnes_cooper.py).
        ineqs: expressions ``g`` meaning ``g <= 0`` entrywise.
        eqs: expressions ``h`` meaning ``h == 0`` entrywise.
        variables: every column's variable: the user's first, then auxiliary ones.
        user_variables: the variables ``recover`` returns.
        estimate: the parameter-only node of the ratio's estimate ``kappa`` that Charnes–Cooper
            shifted the cost by (``num - kappa den``), else ``None``.
        transformed_ratio: the ``(num, den)`` that Charnes–Cooper turned into an LP (over the
            user's columns), which ``CompiledProblem.value`` evaluates; ``None`` before it.
    """

    sense: str
    objective: Any
    ratio: tuple[Any, ...] | None
    ineqs: list[Any]
    eqs: list[Any]
    variables: list[Any]
    user_variables: list[Any]
    transformed_ratio: tuple[Any, Any] | None = None
    estimate: Any = None

    def copy(self, **changes: Any) -> CanonProblem:
        """A shallow copy with ``changes`` applied."""
        return replace(self, **changes)


class Reduction:
    """One compiler pass: ``apply`` rewrites the problem, ``invert`` maps solutions back."""

    def accepts(self, problem: CanonProblem) -> bool:
        """Whether the pass applies (a pass that does not apply is skipped by the chain)."""
        return True

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        """Returns the rewritten problem and the data ``invert`` needs."""
        raise NotImplementedError

    def invert(
        self, solution: dict[int, torch.Tensor], inverse_data: Any
    ) -> dict[int, torch.Tensor]:
        """Maps ``{id(variable): value}`` of the rewritten problem to the original's.

        The default is the identity: the pass kept the meaning of every column.
        """
        return solution


class Chain:
    """Applies passes in order and inverts them in reverse order."""

    def __init__(self, reductions: list[Reduction]) -> None:
        self.reductions = reductions
        self.applied: list[tuple[Reduction, Any]] = []

    def apply(self, problem: CanonProblem) -> CanonProblem:
        """Runs every accepting pass, remembering inverse data."""
        self.applied = []
        for r in self.reductions:
            if not r.accepts(problem):
                continue
            problem, data = r.apply(problem)
            self.applied.append((r, data))
        return problem

    def invert(self, solution: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Inverts the applied passes, last first."""
        for r, data in reversed(self.applied):
            solution = r.invert(solution, data)
        return solution
