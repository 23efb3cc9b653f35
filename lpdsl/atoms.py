"""Piecewise-linear atoms that keep a model an LP: abs, pos, maximum, minimum, max, min,
sum_largest, norm1.

Each builds one node of the expression tree (``docs/architecture.md``). Arguments must be
affine (or constant): nesting atoms would still be LP-representable, but refusing it keeps
every atom's epigraph a handful of rows in the compiler and keeps the curvature rules simple.
Convex atoms (everything but ``minimum``/``min``) may be minimised or bounded above; concave
ones maximised or bounded below. Where they are used the other way, ``lpdsl.problem`` raises
a :class:`~lpdsl.errors.DSLError` saying so.

Note that ``abs``, ``max`` and ``min`` shadow the builtins inside this module on purpose:
they are the public ``lp.abs``, ``lp.max`` and ``lp.min``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from lpdsl.errors import DSLError
from lpdsl.expressions import (
    Expression,
    as_expression,
    desc,
    describe,
    normalize_axis,
)

__all__ = ["abs", "max", "maximum", "min", "minimum", "norm1", "pos", "sum_largest"]

_CONVEX = {"abs", "pos", "maximum", "max", "sum_largest", "norm1"}


#: Atoms that are nondecreasing in every argument: a convex one of a convex inner atom (or
#: a concave one of a concave inner atom) is the same atom of a variable bounding it.
_NONDECREASING_CONVEX = {"pos", "maximum", "max", "sum_largest"}
_NONDECREASING_CONCAVE = {"minimum", "min"}


def _affine_arg(value: Any, atom: str, position: int | None = None) -> Expression:
    where = atom if position is None else f"{atom} (argument {position})"
    e = as_expression(value, where)
    if e.curvature not in ("constant", "affine"):
        inner = describe(e)
        if e.curvature == "convex" and atom in _NONDECREASING_CONVEX:
            advice = (
                f"Introduce a variable t with the constraint {inner} <= t and apply {atom} "
                "to t (exact where the model minimises it)"
            )
        elif e.curvature == "concave" and atom in _NONDECREASING_CONCAVE:
            advice = (
                f"Introduce a variable t with the constraint t <= {inner} and apply {atom} "
                "to t (exact where the model maximises it)"
            )
        else:  # abs/norm1 are not monotone; a convex atom of a concave one is neither
            # (the advice "inner <= t" was given for these too, and min |t| with
            # max(x0, x1) <= t answered 0 for |max(x)| = 2: a reviewing helper's probe)
            advice = (
                f"{atom} of a {e.curvature} expression has no LP form that bounding the inner "
                "atom by a variable gives; write the composition out by hand (split it by sign)"
            )
        raise DSLError(
            f"{atom}: the argument {desc(e)} is {e.curvature}, but atoms take affine "
            "arguments only (no nesting of abs/pos/maximum/minimum/max/min/sum_largest/"
            f"norm1). {advice}"
        )
    return e


def _curvature(op: str, args: tuple[Expression, ...]) -> str:
    if not any(a.has_variables for a in args):
        return "constant"
    return "convex" if op in _CONVEX else "concave"


def _elementwise(op: str, x: Any) -> Expression:
    e = _affine_arg(x, op)
    return Expression(op, (e,), e.shape, curvature=_curvature(op, (e,)))


def abs(x: Any) -> Expression:
    """Elementwise absolute value ``|x|`` (convex)."""
    return _elementwise("abs", x)


def pos(x: Any) -> Expression:
    """Elementwise positive part ``max(x, 0)`` (convex): hinge losses, slacks."""
    return _elementwise("pos", x)


def _elementwise_extreme(op: str, args: tuple[Any, ...]) -> Expression:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    if len(args) < 2:
        reducer = "max" if op == "maximum" else "min"
        raise DSLError(
            f"{op} needs at least 2 arguments (elementwise over broadcast arguments), got "
            f"{len(args)}; for the largest entry of one expression use lp.{reducer}(x)"
        )
    exprs = tuple(_affine_arg(a, op, i) for i, a in enumerate(args))
    shape = exprs[0].shape
    for i, e in enumerate(exprs[1:], start=1):
        try:
            shape = tuple(np.broadcast_shapes(shape, e.shape))
        except ValueError:
            earlier = ", ".join(desc(x) for x in exprs[:i])
            raise DSLError(
                f"{op}: argument {i}, {desc(e)}, does not broadcast with the arguments before "
                f"it ({earlier}; their broadcast shape is {shape})"
            ) from None
    return Expression(op, exprs, shape, curvature=_curvature(op, exprs))


def maximum(*args: Any) -> Expression:
    """Elementwise maximum of two or more broadcast expressions (convex).

    Args:
        *args: Affine expressions, arrays or numbers (or one list of them).
    """
    return _elementwise_extreme("maximum", args)


def minimum(*args: Any) -> Expression:
    """Elementwise minimum of two or more broadcast expressions (concave).

    Args:
        *args: Affine expressions, arrays or numbers (or one list of them).
    """
    return _elementwise_extreme("minimum", args)


def _reduction(op: str, x: Any, axis: int | None) -> Expression:
    e = _affine_arg(x, op)
    if e.size == 0:
        raise DSLError(f"{op}: {desc(e)} has no entries; the {op} of nothing is undefined")
    if axis is None:
        return Expression(op, (e,), (), {"axis": None}, _curvature(op, (e,)))
    ax = normalize_axis(axis, e, op)
    if e.shape[ax] == 0:
        raise DSLError(f"{op}: axis {ax} of {desc(e)} is empty")
    shape = e.shape[:ax] + e.shape[ax + 1 :]
    return Expression(op, (e,), shape, {"axis": ax}, _curvature(op, (e,)))


def max(x: Any, axis: int | None = None) -> Expression:
    """Largest entry of ``x``, or along ``axis`` (convex).

    Args:
        x: An affine expression.
        axis: ``None`` for the largest entry overall; an int reduces that axis.
    """
    return _reduction("max", x, axis)


def min(x: Any, axis: int | None = None) -> Expression:
    """Smallest entry of ``x``, or along ``axis`` (concave).

    Args:
        x: An affine expression.
        axis: ``None`` for the smallest entry overall; an int reduces that axis.
    """
    return _reduction("min", x, axis)


def sum_largest(x: Any, k: int) -> Expression:
    """Sum of the ``k`` largest entries of ``x`` (convex): top-k losses, CVaR.

    Args:
        x: An affine expression with at least ``k`` entries.
        k: How many entries, ``1 <= k <= x.size``.
    """
    e = _affine_arg(x, "sum_largest")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise DSLError(f"sum_largest({describe(e)}, k={k!r}): k must be an int")
    k = int(k)
    if not 1 <= k <= e.size:
        raise DSLError(
            f"sum_largest({describe(e)}, k={k}): k must be between 1 and the number of "
            f"entries of {desc(e)}, which is {e.size}"
        )
    return Expression("sum_largest", (e,), (), {"k": k}, _curvature("sum_largest", (e,)))


def norm1(x: Any) -> Expression:
    """The 1-norm ``sum(|x|)`` over all entries (convex)."""
    e = _affine_arg(x, "norm1")
    return Expression("norm1", (e,), (), curvature=_curvature("norm1", (e,)))
