"""Pass 1: piecewise-linear atoms -> epigraph variables and rows (table-driven).

Like CVXPY's ``eliminate_pwl`` canonicalizers, each atom has a ``canon_fn(node, args, aux) ->
(replacement, rows)`` (appending its new variables to ``aux``): the atom is replaced by a new
auxiliary variable ``t`` and rows ``g <= 0``
that make ``t`` an upper bound of a convex atom (``t >= f(a)``) or a lower bound of a concave
one (``t <= f(a)``). This is exact for an LP because the declaration layer has already
checked curvature (SPEC §1, docs/architecture.md): a convex atom only occurs where it is
bounded above or minimised, so at an optimum ``t`` can be pushed down to ``f(a)`` (mirrored
for concave atoms). Atoms have affine arguments (no nesting), so every epigraph is a handful
of rows per entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lpdsl.compiler import nodes
from lpdsl.compiler.nodes import Node, aux_variable
from lpdsl.compiler.reduction import CanonProblem, Reduction
from lpdsl.expressions import walk

Rows = list[Any]
CanonFn = Callable[[Any, tuple[Any, ...], list[Any]], tuple[Any, Rows]]


def _abs(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    (a,) = args
    t = aux_variable(a.shape, "abs")
    aux.append(t)
    return t, [nodes.sub(a, t), nodes.sub(nodes.neg(a), t)]  # -t <= a <= t


def _pos(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    (a,) = args
    t = aux_variable(a.shape, "pos", lb=0.0)  # t >= 0 is a bound, made a row by pass 3
    aux.append(t)
    return t, [nodes.sub(a, t)]


def _maximum(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    t = aux_variable(node.shape, "maximum")
    aux.append(t)
    return t, [nodes.sub(a, t) for a in args]  # a_i <= t, broadcast


def _minimum(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    t = aux_variable(node.shape, "minimum")
    aux.append(t)
    return t, [nodes.sub(t, a) for a in args]  # t <= a_i


def _keepdims(t: Any, a: Any, axis: int | None) -> Any:
    """``t`` (the reduced shape) reshaped so it broadcasts against ``a`` along ``axis``."""
    if axis is None:
        return t
    shape = (*a.shape[:axis], 1, *a.shape[axis + 1 :])
    return Node("reshape", (t,), shape, {"shape": shape})


def _max(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    (a,) = args
    t = aux_variable(node.shape, "max")
    aux.append(t)
    return t, [nodes.sub(a, _keepdims(t, a, node.attrs.get("axis")))]


def _min(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    (a,) = args
    t = aux_variable(node.shape, "min")
    aux.append(t)
    return t, [nodes.sub(_keepdims(t, a, node.attrs.get("axis")), a)]


def _sum_largest(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    """``sum of the k largest of a`` = ``min_t k t + sum(max(a - t, 0))`` (an LP dual).

    Rows ``a <= t + u``, ``u >= 0``; value ``k t + sum(u)``. For ``k >= a.size`` the atom is
    just ``sum(a)`` (the formula would let ``t -> -inf``).
    """
    (a,) = args
    k = int(node.attrs["k"])
    n = nodes.size(a.shape)
    if k >= n:
        return Node("sum", (a,), (), {"axis": None}), []
    flat = Node("reshape", (a,), (n,), {"shape": (n,)})
    t = aux_variable((), "sum_largest_t")
    u = aux_variable((n,), "sum_largest_u", lb=0.0)
    aux.extend((t, u))
    value = nodes.add(
        Node("mul", (nodes.constant(float(k)), t), ()), Node("sum", (u,), (), {"axis": None})
    )
    return value, [nodes.sub(flat, nodes.add(t, u))]


def _norm1(node: Any, args: tuple[Any, ...], aux: list[Any]) -> tuple[Any, Rows]:
    (a,) = args
    u = aux_variable(a.shape, "norm1")
    aux.append(u)
    return Node("sum", (u,), (), {"axis": None}), [nodes.sub(a, u), nodes.sub(nodes.neg(a), u)]


CANON: dict[str, CanonFn] = {
    "abs": _abs,
    "pos": _pos,
    "maximum": _maximum,
    "minimum": _minimum,
    "max": _max,
    "min": _min,
    "sum_largest": _sum_largest,
    "norm1": _norm1,
}


class EliminatePWL(Reduction):
    """Replaces every variable-dependent atom by its epigraph (or hypograph) variable.

    Atoms of parameter-only data (e.g. ``abs(scores)``) stay: the evaluator computes them.
    Inverse: drop the auxiliary columns.
    """

    def accepts(self, problem: CanonProblem) -> bool:
        roots = self._roots(problem)
        return any(n.op in CANON and n.has_variables for n in walk(roots))

    @staticmethod
    def _roots(problem: CanonProblem) -> list[Any]:
        roots = [*problem.ineqs, *problem.eqs]
        roots.extend(problem.ratio if problem.ratio is not None else [problem.objective])
        return roots

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        memo: dict[int, Any] = {}
        aux: list[Any] = []
        new_rows: list[Any] = []
        for node in walk(self._roots(problem)):
            args = tuple(memo.get(id(a), a) for a in node.args)
            changed = any(x is not y for x, y in zip(args, node.args, strict=False))
            if node.op in CANON and node.has_variables:
                value, rows = CANON[node.op](node, args, aux)
                memo[id(node)] = value
                new_rows.extend(rows)
            elif changed:
                memo[id(node)] = Node(node.op, args, node.shape, node.attrs, node.name)

        def sub(e: Any) -> Any:
            return memo.get(id(e), e)

        out = problem.copy(
            objective=None if problem.objective is None else sub(problem.objective),
            ratio=None if problem.ratio is None else tuple(sub(e) for e in problem.ratio),
            ineqs=[*(sub(e) for e in problem.ineqs), *new_rows],
            eqs=[sub(e) for e in problem.eqs],
            variables=[*problem.variables, *aux],
        )
        return out, [id(v) for v in aux]

    def invert(self, solution: dict[int, Any], inverse_data: Any) -> dict[int, Any]:
        drop = set(inverse_data)
        return {k: v for k, v in solution.items() if k not in drop}


__all__ = ["CANON", "EliminatePWL"]
