"""Constraints, objectives and the :class:`Problem` that holds them.

These objects are where an expression's curvature meets its use: a convex expression may be
minimised or bounded above, a concave one maximised or bounded below, an equality needs both
sides affine, and a :class:`~lpdsl.expressions.Ratio` may only be a whole objective. Each
check runs when the object is built, and its message says why the model would not be an LP
and what would be.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

from lpdsl.errors import DSLError
from lpdsl.expressions import (
    Expression,
    Lazy,
    Parameter,
    Ratio,
    Variable,
    as_expression,
    broadcast_shape,
    desc,
    describe,
    restore_slots,
    walk,
)

__all__ = ["Constraint", "Maximize", "Minimize", "Objective", "Problem"]

_SENSES = ("<=", ">=", "==")


class Constraint:
    """``lhs <= rhs``, ``lhs >= rhs`` or ``lhs == rhs``, elementwise after broadcasting.

    Built by the comparison operators of expressions; ``Constraint(lhs, rhs, sense)`` works
    too.

    Attributes:
        lhs: The left-hand side (an :class:`Expression`).
        rhs: The right-hand side (an :class:`Expression`).
        sense: ``"<="``, ``">="`` or ``"=="``.
        shape: The broadcast shape of the two sides: one scalar constraint per entry.
    """

    __slots__ = ("lhs", "rhs", "sense", "shape")
    __hash__ = object.__hash__

    lhs: Expression
    rhs: Expression
    sense: str
    shape: tuple[int, ...]

    def __init__(self, lhs: Any, rhs: Any, sense: str) -> None:
        if sense not in _SENSES:
            raise DSLError(f"Constraint: sense must be one of {_SENSES}, got {sense!r}")
        lhs_e = as_expression(lhs, f"left side of {sense}")
        rhs_e = as_expression(rhs, f"right side of {sense}")
        where = Lazy(lambda: f"{describe(lhs_e)} {sense} {describe(rhs_e)}")
        shape = broadcast_shape(where, lhs_e, rhs_e)
        _check_constraint_curvature(lhs_e, rhs_e, sense, where)
        set_ = object.__setattr__
        set_(self, "lhs", lhs_e)
        set_(self, "rhs", rhs_e)
        set_(self, "sense", sense)
        set_(self, "shape", shape)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("constraints are immutable")

    __setstate__ = restore_slots

    @property
    def size(self) -> int:
        """Number of scalar constraints (entries of the broadcast shape)."""
        return math.prod(self.shape)

    @property
    def has_variables(self) -> bool:
        """Whether either side depends on a variable."""
        return self.lhs.has_variables or self.rhs.has_variables

    def __bool__(self) -> bool:
        if self.sense == "==":
            # `x in [p]` (and list.index/remove/count) asks bool(p == x)
            raise DSLError(
                f"the truth value of the constraint {self} is not defined. A membership test "
                "`x in items` (or items.index(x), items.remove(x), items.count(x)) compares "
                "expressions with ==, which builds a constraint; test identity instead: "
                "any(e is x for e in items). Chained comparisons (a == x == b) do not work "
                "either; write [a == x, x == b]"
            )
        raise DSLError(
            f"the truth value of the constraint {self} is not defined. Chained comparisons "
            "(a <= x <= b) do not work; write [a <= x, x <= b]"
        )

    def _chain(self, *_: Any) -> Any:
        raise DSLError(
            f"cannot combine or compare the constraint {self}; put each constraint in the "
            "list given to lp.Problem"
        )

    __le__ = __ge__ = __lt__ = __gt__ = __eq__ = __ne__ = _chain  # type: ignore[assignment]
    __and__ = __or__ = __add__ = __radd__ = __mul__ = __rmul__ = _chain

    def __str__(self) -> str:
        from lpdsl.rendering import to_text

        return to_text(self)

    def __repr__(self) -> str:
        return f"Constraint({self}, shape={self.shape})"

    def to_latex(self) -> str:
        """LaTeX of the constraint (math mode, without ``$``)."""
        from lpdsl.rendering import to_latex

        return to_latex(self)


def _check_constraint_curvature(lhs: Expression, rhs: Expression, sense: str, where: Lazy) -> None:
    if sense == "==":
        for side in (lhs, rhs):
            if side.curvature in ("convex", "concave"):
                atom_side = describe(side)
                raise DSLError(
                    f"{where} is not an LP constraint: {desc(side)} is {side.curvature}, and "
                    "an equality needs both sides affine (its feasible set would not be "
                    f"convex). Bound it instead: {atom_side} "
                    f"{'<=' if side.curvature == 'convex' else '>='} ..."
                )
        return
    small, big = (lhs, rhs) if sense == "<=" else (rhs, lhs)
    if small.curvature == "concave":
        raise DSLError(
            f"{where} is not convex: {desc(small)} is concave, and a concave expression may "
            f"only be bounded below ({describe(small)} >= t), maximised, or placed on the "
            "larger side of an inequality"
        )
    if big.curvature == "convex":
        raise DSLError(
            f"{where} is not convex: {desc(big)} is convex, and a convex expression may only "
            f"be bounded above ({describe(big)} <= t), minimised, or placed on the smaller "
            "side of an inequality"
        )


class Objective:
    """Base of :class:`Minimize` and :class:`Maximize`.

    Args:
        expr: the objective.
        estimate: for a ratio ``num / den`` only, an estimate of its optimal value (see
            :class:`Minimize`, whose reference documents it).

    Attributes:
        expr: A scalar :class:`Expression` or a :class:`~lpdsl.expressions.Ratio`.
        estimate: The ratio's estimate (an :class:`Expression`), or ``None``.
        sense: ``"min"`` or ``"max"``.
    """

    __slots__ = ("estimate", "expr")
    sense: ClassVar[str] = ""
    sense_word: ClassVar[str] = ""

    expr: Expression | Ratio
    estimate: Expression | None

    def __init__(self, expr: Any, *, estimate: Any = None) -> None:
        cls = type(self).__name__
        object.__setattr__(self, "estimate", None)
        if estimate is not None:
            if not isinstance(expr, Ratio):
                raise DSLError(
                    f"{cls}: estimate= is for a ratio objective num / den (a linear objective "
                    "needs none); drop it"
                )
            est = as_expression(estimate, f"{cls} estimate")
            if est.shape != () or est.has_variables:
                what = "depends on variables" if est.has_variables else f"has shape {est.shape}"
                raise DSLError(
                    f"{cls}: the estimate {desc(est)} {what}; it must be a scalar of "
                    "parameters and constants (a guess of the ratio's optimal value)"
                )
            object.__setattr__(self, "estimate", est)
        if isinstance(expr, Ratio):
            object.__setattr__(self, "expr", expr)  # Ratio() already checked num and den
            return
        if isinstance(expr, Objective):
            raise DSLError(f"{cls}: got the objective {expr}; pass its expression instead")
        e = as_expression(expr, cls)
        if e.shape != ():
            raise DSLError(
                f"{cls}: the objective must be a scalar, but {desc(e)} is not; reduce it "
                "first, e.g. with .sum() or a weighted sum c @ x"
            )
        bad = "concave" if self.sense == "min" else "convex"
        if e.curvature == bad:
            good_sense = "Maximize" if self.sense == "min" else "Minimize"
            bound = ">=" if bad == "concave" else "<="
            way = "down" if bad == "concave" else "up"
            raise DSLError(
                f"{cls}({describe(e)}) is not an LP: the objective is {bad}, and "
                f"{'minimising a concave' if bad == 'concave' else 'maximising a convex'} "
                f"function has no LP form (a constraint can hold it {bound} t, but nothing "
                f"can push it {way}). Use lp.{good_sense} if that was meant"
            )
        object.__setattr__(self, "expr", e)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("objectives are immutable")

    __setstate__ = restore_slots

    @property
    def is_ratio(self) -> bool:
        """Whether the objective is a linear-fractional ratio."""
        return isinstance(self.expr, Ratio)

    def __str__(self) -> str:
        from lpdsl.rendering import to_text

        return to_text(self)

    def __repr__(self) -> str:
        shown = "" if self.estimate is None else f", estimate={self.estimate}"
        return f"{type(self).__name__}({self.expr}{shown})"


class Minimize(Objective):
    """Minimise a scalar convex-or-affine expression, or a ratio of affine scalars.

    Args:
        expr: the objective.
        estimate: for a ratio ``num / den`` only, an estimate of its optimal value: a scalar
            of parameters and constants (no variables). Any value gives the same solution;
            the nearer the optimum, from the worse side, the fewer Newton steps (the cost
            becomes ``num - estimate * den``, equal to ``num`` on the Charnes–Cooper LP's
            feasible set: docs/compiler.md, "An estimate of the ratio"). Per batch item, an
            estimate that would make that cost more than 100 times as large as ``num``'s is
            left out (the solver's tolerances are relative to the cost).
    """

    __slots__ = ()
    sense = "min"
    sense_word = "minimize"


class Maximize(Objective):
    """Maximise a scalar concave-or-affine expression, or a ratio of affine scalars.

    Args: as :class:`Minimize` (``expr``, and ``estimate`` for a ratio).
    """

    __slots__ = ()
    sense = "max"
    sense_word = "maximize"


def _kind(obj: Any) -> str:
    """What ``obj`` is, for a message: an expression by its rendering, not its class."""
    if isinstance(obj, (Expression, Ratio)):
        return f"the expression {describe(obj)}"
    return type(obj).__name__


class Problem:
    """A linear (or linear-fractional) program: an objective and a list of constraints.

    Args:
        objective: ``lp.Minimize(...)`` or ``lp.Maximize(...)``.
        constraints: A list or tuple of constraints (built with ``<=``, ``>=``, ``==``).

    Attributes:
        objective: The objective.
        constraints: The constraints, as a tuple.
    """

    __slots__ = ("_leaves", "constraints", "objective")

    objective: Objective
    constraints: tuple[Constraint, ...]

    def __init__(self, objective: Any, constraints: Sequence[Constraint] = ()) -> None:
        if not isinstance(objective, Objective):
            hint = (
                " (wrap it: lp.Minimize(expr) or lp.Maximize(expr))"
                if isinstance(objective, (Expression, Ratio))
                else ""
            )
            raise DSLError(
                f"Problem: the objective must be lp.Minimize(...) or lp.Maximize(...), got "
                f"{_kind(objective)}{hint}"
            )
        if isinstance(constraints, Constraint):
            raise DSLError(
                "Problem: constraints must be a list or tuple of constraints, got a single "
                f"Constraint ({constraints}); wrap it in a list: [{constraints}]"
            )
        if not isinstance(constraints, (list, tuple)):
            if constraints is None:
                fix = "omit it or pass []"
            elif isinstance(constraints, dict):
                fix = "pass list(constraints.values())"
            elif isinstance(constraints, str) or not hasattr(constraints, "__iter__"):
                fix = "pass a list of constraints such as [x >= 0, x.sum() == 1]"
            else:
                fix = "pass list(...) of it"
            raise DSLError(
                "Problem: constraints must be a list or tuple of constraints, got "
                f"{type(constraints).__name__}; {fix}"
            )
        for i, c in enumerate(constraints):
            if not isinstance(c, Constraint):
                hint = ""
                if isinstance(c, (list, tuple)):  # groups of constraints (a reviewing helper)
                    hint = "; flatten the groups into one list: [*group1, *group2]"
                elif isinstance(c, (bool,)) or type(c).__module__.startswith(("numpy", "torch")):
                    hint = (
                        " (a comparison between plain numbers/arrays/tensors gives booleans; "
                        "at least one side must be an lpdsl expression)"
                    )
                raise DSLError(
                    f"Problem: constraint at position {i} is a {type(c).__name__}, not a "
                    f"Constraint{hint}"
                )
        object.__setattr__(self, "objective", objective)
        object.__setattr__(self, "constraints", tuple(constraints))
        object.__setattr__(self, "_leaves", None)
        self._warn_shared_names()

    def _warn_shared_names(self) -> None:
        """Warn where two leaves share a name: a Parameter and a Variable both named ``a``
        rendered as ``a @ a``, which reads as a quadratic term, and two Variables ``b`` as
        ``sum(b) - sum(b)`` (a reviewing helper's probe, twentieth pass)."""
        params, variables = self._collect()
        seen: dict[str, Any] = {}
        for leaf in (*variables, *params):
            other = seen.setdefault(leaf.name, leaf)
            if other is not leaf:
                warnings.warn(
                    f"Problem: a {type(other).__name__} {other.shape} and a "
                    f"{type(leaf).__name__} {leaf.shape} are both named {leaf.name!r}; "
                    "printed models and messages cannot tell them apart: give them "
                    "distinct names",
                    stacklevel=3,
                )
                return

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("problems are immutable; build a new lp.Problem")

    __setstate__ = restore_slots

    def _collect(self) -> tuple[list[Parameter], list[Variable]]:
        if self._leaves is None:
            roots: list[Any] = [self.objective.expr]
            if self.objective.estimate is not None:
                roots.append(self.objective.estimate)
            for c in self.constraints:
                roots.extend((c.lhs, c.rhs))
            params = [n for n in walk(roots) if isinstance(n, Parameter)]
            variables = [n for n in walk(roots) if isinstance(n, Variable)]
            params.sort(key=lambda n: n.id)
            variables.sort(key=lambda n: n.id)
            object.__setattr__(self, "_leaves", (params, variables))
        params, variables = self._leaves
        return list(params), list(variables)

    def parameters(self) -> list[Parameter]:
        """The parameters the problem uses, in order of creation (the positional order of
        parameter values everywhere in lpdsl)."""
        return self._collect()[0]

    def variables(self) -> list[Variable]:
        """The variables the problem uses, in order of creation."""
        return self._collect()[1]

    @property
    def is_ratio(self) -> bool:
        """Whether the objective is linear-fractional (compiled by Charnes–Cooper)."""
        return self.objective.is_ratio

    def compile(self) -> Any:
        """Compile once into a :class:`~lpdsl.compiler.CompiledProblem` (SPEC §2)."""
        from lpdsl.compiler import compile_problem

        return compile_problem(self)

    def to_cvxpy(self, *values: Any) -> Any:
        """Rebuild this model in CVXPY with numeric parameter values (SPEC §5).

        Args:
            *values: Parameter values in the order of :meth:`parameters`, or one dict
                ``{parameter: value}``.

        Returns:
            ``(cvxpy_problem, {Variable: cvxpy_variable})`` as defined by ``lpdsl.oracle``.
        """
        from lpdsl.oracle import to_cvxpy

        return to_cvxpy(self, *values)

    def __str__(self) -> str:
        from lpdsl.rendering import problem_to_text

        return problem_to_text(self)

    def __repr__(self) -> str:
        return (
            f"Problem({type(self.objective).__name__}, {len(self.constraints)} constraints, "
            f"{len(self.variables())} variables, {len(self.parameters())} parameters)"
        )

    def to_latex(self) -> str:
        """LaTeX of the model (an ``array`` environment in math mode)."""
        from lpdsl.rendering import problem_to_latex

        return problem_to_latex(self)

    def _repr_latex_(self) -> str:
        return f"$${self.to_latex()}$$"
