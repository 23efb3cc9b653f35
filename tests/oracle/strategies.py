"""Hypothesis strategies that generate random well-posed lpdsl models.

Why these shapes: the compiler's passes (bounds, equalities, epigraphs of atoms,
Charnes–Cooper, coefficient maps over broadcasting, indexing, reshapes and stacking) each have
their own failure modes, and a property test only finds them if the generated models reach
every pass in many combinations.

Well-posedness by construction:

- every variable has a finite box (``lb``/``ub``, or ``nonneg`` plus ``ub``), so every LP is
  bounded;
- a point ``x0`` strictly inside every box is drawn first, and every expression carries its
  numpy value at ``x0``; inequalities get a positive slack at ``x0`` and equalities pass through
  ``x0``, so ``x0`` is feasible;
- ratio denominators are ``d0 + sum(w * v)`` over boxed variables with ``d0`` chosen so that
  the minimum over the boxes is at least 0.5 (``den > 0`` on the feasible set, SPEC §1);
- divisors are parameters bounded away from zero; parameters scaling an atom are declared
  ``nonneg`` and drawn positive.

Structure (shapes, operations, atoms, senses) comes from hypothesis draws so that it explores
and shrinks; numbers come from a numpy generator seeded by a draw (shrinking numbers buys little
here and numpy draws are much faster).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import strategies as st

import lpdsl as lp

DIMS = st.integers(1, 4)


@dataclass
class Term:
    """An lpdsl expression together with its numpy value at the feasible point ``x0``."""

    expr: Any
    val: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.val.shape)


@dataclass
class ModelCase:
    """A generated model, its parameter values and a point known to be feasible.

    Attributes:
        problem: The declared problem.
        param_values: ``{Parameter: ndarray}`` for every parameter created (the problem may
            use a subset).
        x0: ``{Variable: ndarray}``, a feasible point with slack in every inequality.
        log: The construction steps, for reading a failing example.
    """

    problem: Any
    param_values: dict[Any, np.ndarray]
    x0: dict[Any, np.ndarray]
    log: list[str] = field(default_factory=list)

    @property
    def values(self) -> list[np.ndarray]:
        """Parameter values in ``problem.parameters()`` order (the positional convention)."""
        return [self.param_values[p] for p in self.problem.parameters()]

    def __repr__(self) -> str:
        shapes = {p.name: p.shape for p in self.problem.parameters()}
        return f"ModelCase(\n  {self.problem}\n  parameters={shapes}\n  steps={self.log}\n)"


class _Builder:
    """Draws one model step by step; every method returns :class:`Term` objects."""

    def __init__(self, draw: Any, rng: np.random.Generator) -> None:
        self.draw = draw
        self.rng = rng
        self.params: dict[Any, np.ndarray] = {}
        self.vars: list[Term] = []
        self.x0: dict[Any, np.ndarray] = {}
        self.log: list[str] = []

    # ---------------------------------------------------------------- leaves

    def shape(self, max_ndim: int = 2) -> tuple[int, ...]:
        ndim = self.draw(st.integers(0, max_ndim))
        return tuple(self.draw(DIMS) for _ in range(ndim))

    def variable(self) -> Term:
        shape = self.shape()
        kind = self.draw(st.sampled_from(["box", "nonneg", "nonneg_lb", "scalar_bounds"]))
        rng = self.rng
        name = f"x{len(self.vars)}"
        if kind == "box":
            x0 = rng.uniform(-1.5, 1.5, shape)
            var = lp.Variable(
                shape,
                name=name,
                lb=x0 - rng.uniform(0.1, 1.0, shape),
                ub=x0 + rng.uniform(0.1, 1.0, shape),
            )
        elif kind == "nonneg":
            x0 = rng.uniform(0.1, 1.5, shape)
            var = lp.Variable(shape, name=name, nonneg=True, ub=x0 + rng.uniform(0.1, 1.0, shape))
        elif kind == "nonneg_lb":  # nonneg and lb both hold: effective lb = max(0, lb)
            x0 = rng.uniform(0.6, 1.5, shape)
            lb = rng.uniform(-1.0, 0.5, shape)
            var = lp.Variable(shape, name=name, nonneg=True, lb=lb, ub=2.0)
        else:
            x0 = rng.uniform(-0.9, 0.9, shape)
            var = lp.Variable(shape, name=name, lb=-1.0, ub=1.0)
        self.log.append(f"{name}: Variable{shape} {kind}")
        term = Term(var, np.asarray(x0, dtype=np.float64))
        self.vars.append(term)
        self.x0[var] = term.val
        return term

    def param(
        self,
        shape: tuple[int, ...],
        *,
        nonneg: bool = False,
        away: bool = False,
        value: np.ndarray | None = None,
    ) -> Term:
        """A fresh parameter; ``away`` keeps |value| in [0.5, 2] (a safe divisor)."""
        rng = self.rng
        if value is None:
            if away:
                value = rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)
            elif nonneg:
                value = rng.uniform(0.1, 2.0, shape)
            else:
                value = rng.uniform(-2.0, 2.0, shape)
        value = np.asarray(value, dtype=np.float64).reshape(shape)
        p = lp.Parameter(shape, name=f"p{len(self.params)}", nonneg=nonneg)
        self.params[p] = value
        return Term(p, value)

    def coef(self, shape: tuple[int, ...]) -> Term:
        """A coefficient: a parameter, a constant array, or a product of two parameters."""
        kind = self.draw(st.sampled_from(["param", "const", "param_product"]))
        if kind == "const":
            v = np.round(self.rng.uniform(-2.0, 2.0, shape), 2)
            return Term(lp.Constant(v), v)
        if kind == "param_product":  # products of parameters are allowed (unlike DPP)
            a, b = self.param(shape), self.param(shape)
            return Term(a.expr * b.expr, a.val * b.val)
        return self.param(shape)

    # ---------------------------------------------------------------- affine expressions

    def leaf(self) -> Term:
        if not self.vars or self.draw(st.integers(0, 4)) == 0:
            return self.variable()
        return self.vars[self.draw(st.integers(0, len(self.vars) - 1))]

    def coerce(self, t: Term, shape: tuple[int, ...]) -> Term:
        """Gather entries of ``t`` into exactly ``shape`` (a flatten plus an index array)."""
        if t.shape == shape:
            return t
        flat = t.expr.reshape(t.val.size) if t.val.ndim != 1 else t.expr
        idx = self.rng.integers(0, t.val.size, size=shape)
        key = int(idx) if shape == () else idx
        return Term(flat[key], t.val.reshape(-1)[idx])

    def affine(self, depth: int) -> Term:
        if depth <= 0:
            return self.leaf()
        op = self.draw(
            st.sampled_from(
                [
                    "leaf",
                    "neg",
                    "add",
                    "sub",
                    "add_bcast",
                    "mul",
                    "mul_const",
                    "div",
                    "matmul_left",
                    "matmul_right",
                    "sum",
                    "transpose",
                    "reshape",
                    "index",
                    "hstack",
                    "vstack",
                ]
            )
        )
        a = self.affine(depth - 1)
        shape = a.shape
        if op == "leaf":
            return a
        if op == "neg":
            return Term(-a.expr, -a.val)
        if op in ("add", "sub"):
            b = self.coerce(self.affine(depth - 1), shape)
            if op == "add":
                return Term(a.expr + b.expr, a.val + b.val)
            return Term(a.expr - b.expr, a.val - b.val)
        if op == "add_bcast":  # broadcast a scalar or a trailing-axis vector against a
            bshape = self.draw(st.sampled_from([(), shape[-1:]]))
            if self.draw(st.booleans()):
                b = self.coerce(self.affine(depth - 1), bshape)
            else:
                b = self.coef(bshape)
            return Term(b.expr + a.expr, b.val + a.val)
        if op == "mul":
            cshape = self.draw(st.sampled_from([(), shape, shape[-1:]]))
            c = self.coef(cshape)
            if self.draw(st.booleans()):
                return Term(c.expr * a.expr, c.val * a.val)
            return Term(a.expr * c.expr, a.val * c.val)
        if op == "mul_const":
            k = float(np.round(self.rng.uniform(-3.0, 3.0), 2)) or 1.0
            return Term(k * a.expr, k * a.val)
        if op == "div":
            dshape = self.draw(st.sampled_from([(), shape[-1:]]))
            d = self.param(dshape, away=True)
            return Term(a.expr / d.expr, a.val / d.val)
        if op == "matmul_left" and a.val.ndim in (1, 2):
            rows = self.draw(st.sampled_from([(), (self.draw(DIMS),)]))
            c = self.coef((*rows, shape[0]))
            return Term(c.expr @ a.expr, c.val @ a.val)
        if op == "matmul_right" and a.val.ndim in (1, 2):
            cols = self.draw(st.sampled_from([(), (self.draw(DIMS),)]))
            c = self.coef((shape[-1], *cols))
            return Term(a.expr @ c.expr, a.val @ c.val)
        if op == "sum":
            axis = self.draw(st.sampled_from([None, *range(a.val.ndim), -1][: a.val.ndim + 2]))
            if axis is None or a.val.ndim == 0:
                return Term(a.expr.sum(), np.asarray(a.val.sum()))
            return Term(a.expr.sum(axis=axis), a.val.sum(axis=axis))
        if op == "transpose":
            return Term(a.expr.T, np.array(a.val.T))
        if op == "reshape":
            size = a.val.size
            divisors = [d for d in range(1, size + 1) if size % d == 0]
            d = self.draw(st.sampled_from(divisors))
            target = self.draw(st.sampled_from([(size,), (d, size // d), (-1, d)]))
            out = a.val.reshape(target)
            return Term(a.expr.reshape(target), out)
        if op == "index" and a.val.ndim >= 1:
            key = self.index_key(shape)
            return Term(a.expr[key], a.val[key])
        if op == "hstack" and a.val.ndim in (1, 2):
            other = (self.draw(DIMS),) if a.val.ndim == 1 else (shape[0], self.draw(DIMS))
            b = self.coerce(self.affine(depth - 1), other)
            return Term(lp.hstack([a.expr, b.expr]), np.hstack([a.val, b.val]))
        if op == "vstack" and a.val.ndim in (1, 2):
            other = shape if a.val.ndim == 1 else (self.draw(DIMS), shape[1])
            b = self.coerce(self.affine(depth - 1), other)
            return Term(lp.vstack([a.expr, b.expr]), np.vstack([a.val, b.val]))
        return a

    def index_key(self, shape: tuple[int, ...]) -> Any:
        """A numpy key of every kind SPEC §1 lists, never selecting zero entries."""
        n = shape[0]
        kind = self.draw(
            st.sampled_from(["int", "negint", "slice", "step", "array", "mask", "tuple"])
        )
        if kind == "int":
            return self.draw(st.integers(0, n - 1))
        if kind == "negint":
            return -self.draw(st.integers(1, n))
        if kind == "slice":
            start = self.draw(st.integers(0, n - 1))
            return slice(start, self.draw(st.integers(start + 1, n)))
        if kind == "step":
            return slice(None, None, self.draw(st.sampled_from([2, -1, -2])))
        if kind == "array":
            return self.rng.integers(-n, n, size=self.draw(st.integers(1, 4)))
        if kind == "mask":
            mask = self.rng.random(n) < 0.5
            mask[self.rng.integers(n)] = True
            return mask
        if len(shape) == 2:  # (slice, int) / (int, slice)
            j = self.draw(st.integers(-shape[1], shape[1] - 1))
            return (slice(None, None, -1), j) if self.draw(st.booleans()) else (0, slice(j, None))
        return (self.draw(st.integers(0, n - 1)),)

    def scalar(self, depth: int) -> Term:
        """A scalar affine expression: a weighted sum, an index, or a plain sum."""
        a = self.affine(depth)
        how = self.draw(st.sampled_from(["weighted", "index", "sum"]))
        if how == "weighted":
            c = self.coef(a.shape)
            return Term((c.expr * a.expr).sum(), np.asarray((c.val * a.val).sum()))
        if how == "index":
            return self.coerce(a, ())
        return Term(a.expr.sum(), np.asarray(a.val.sum()))

    # ---------------------------------------------------------------- atoms

    def convex(self, depth: int) -> Term:
        """A convex piecewise-linear atom of an affine expression (any shape result)."""
        a = self.affine(depth)
        atom = self.draw(
            st.sampled_from(["abs", "pos", "maximum", "max", "max_axis", "sum_largest", "norm1"])
        )
        if atom == "abs":
            return Term(lp.abs(a.expr), np.abs(a.val))
        if atom == "pos":
            return Term(lp.pos(a.expr), np.maximum(a.val, 0.0))
        if atom == "maximum":
            b = self.coerce(self.affine(depth), a.shape)
            return Term(lp.maximum(a.expr, b.expr), np.maximum(a.val, b.val))
        if atom == "max_axis" and a.val.ndim >= 1:
            axis = self.draw(st.integers(0, a.val.ndim - 1))
            return Term(lp.max(a.expr, axis=axis), a.val.max(axis=axis))
        if atom in ("max", "max_axis"):
            return Term(lp.max(a.expr), np.asarray(a.val.max()))
        if atom == "sum_largest":
            k = self.draw(st.integers(1, a.val.size))
            return Term(lp.sum_largest(a.expr, k), np.asarray(np.sort(a.val.ravel())[-k:].sum()))
        return Term(lp.norm1(a.expr), np.asarray(np.abs(a.val).sum()))

    def concave(self, depth: int) -> Term:
        """A concave atom: minimum, min, or the negation of a convex atom."""
        kind = self.draw(st.sampled_from(["minimum", "min", "neg_convex"]))
        if kind == "neg_convex":
            c = self.convex(depth)
            return Term(-c.expr, -c.val)
        a = self.affine(depth)
        if kind == "minimum":
            b = self.coerce(self.affine(depth), a.shape)
            return Term(lp.minimum(a.expr, b.expr), np.minimum(a.val, b.val))
        return Term(lp.min(a.expr), np.asarray(a.val.min()))

    def scaled(self, t: Term) -> Term:
        """Scale a convex/concave term by a positive constant or a ``nonneg`` parameter."""
        if self.draw(st.booleans()):
            p = self.param((), nonneg=True)
            return Term(p.expr * t.expr, p.val * t.val)
        k = float(np.round(self.rng.uniform(0.1, 2.0), 2))
        return Term(k * t.expr, k * t.val)

    # ---------------------------------------------------------------- constraints

    def slack(self, shape: tuple[int, ...]) -> np.ndarray:
        return self.rng.uniform(0.05, 1.0, shape)

    def rhs(self, value: np.ndarray) -> Any:
        """A constant or parameter right-hand side holding ``value``."""
        if self.draw(st.booleans()):
            return self.param(value.shape, value=value).expr
        return lp.Constant(value)

    def constraint(self, depth: int) -> Any:
        kind = self.draw(
            st.sampled_from(
                ["le", "ge", "le_vars", "eq", "eq_vars", "convex_le", "concave_ge", "convex_le_var"]
            )
        )
        self.log.append(f"constraint {kind}")
        if kind == "le":
            e = self.affine(depth)
            return e.expr <= self.rhs(e.val + self.slack(e.shape))
        if kind == "ge":
            e = self.affine(depth)
            return self.rhs(e.val - self.slack(e.shape)) <= e.expr
        if kind == "le_vars":  # both sides depend on variables
            e1 = self.affine(depth)
            e2 = self.coerce(self.affine(depth), e1.shape)
            gap = e1.val - e2.val + self.slack(e1.shape)
            return e2.expr + lp.Constant(gap) >= e1.expr
        if kind == "eq":
            e = self.affine(depth)
            return e.expr == self.rhs(e.val.copy())
        if kind == "eq_vars":
            e1 = self.affine(depth)
            e2 = self.coerce(self.affine(depth), e1.shape)
            return e1.expr - lp.Constant(e1.val - e2.val) == e2.expr
        if kind == "convex_le":
            c = self.convex(depth)
            if self.draw(st.booleans()):
                c = self.scaled(c)
            return c.expr <= self.rhs(c.val + self.slack(c.shape))
        if kind == "concave_ge":
            c = self.concave(depth)
            return c.expr >= self.rhs(c.val - self.slack(c.shape))
        c = self.convex(depth)  # convex <= affine with variables on the right
        e = self.coerce(self.affine(depth), c.shape)
        return c.expr <= e.expr + lp.Constant(c.val - e.val + self.slack(c.shape))

    # ---------------------------------------------------------------- objectives

    def objective(self, depth: int, kind: str) -> Any:
        self.log.append(f"objective {kind}")
        if kind == "min_affine":
            return lp.Minimize(self.scalar(depth).expr)
        if kind == "max_affine":
            return lp.Maximize(self.scalar(depth).expr)
        if kind == "min_convex":
            expr = self.scalar(depth).expr
            for _ in range(self.draw(st.integers(1, 2))):
                c = self.scaled(self.convex(depth))
                expr = expr + (c.expr.sum() if c.shape != () else c.expr)
            return lp.Minimize(expr)
        if kind == "max_concave":
            expr = self.scalar(depth).expr
            for _ in range(self.draw(st.integers(1, 2))):
                c = self.scaled(self.concave(depth))
                expr = expr + (c.expr.sum() if c.shape != () else c.expr)
            return lp.Maximize(expr)
        num = self.scalar(depth).expr
        den = self.denominator()
        sense = lp.Minimize if kind == "min_ratio" else lp.Maximize
        # an estimate of the ratio moves the Charnes-Cooper LP's cost, never its optimum
        kind_est = self.draw(st.sampled_from(["none", "const", "param"]))
        if kind_est == "none":
            return sense(num / den)
        guess = float(np.round(self.rng.normal(0.0, 3.0), 3))
        self.log.append(f"estimate {kind_est} {guess}")
        est = guess if kind_est == "const" else self.param((), value=np.asarray(guess)).expr
        return sense(num / den, estimate=est)

    def denominator(self) -> Any:
        """``d0 + sum_i sum(w_i * v_i)`` with ``min`` over the boxes >= 0.5 (den > 0)."""
        chosen = [self.leaf() for _ in range(self.draw(st.integers(1, 2)))]
        expr: Any = None
        lowest = 0.0
        for t in chosen:
            var = t.expr
            if var.op != "variable":  # leaf() returns variables; keep the box argument exact
                continue
            w = self.param(var.shape)
            lb, ub = var.attrs["lb"], var.attrs["ub"]
            lowest += float(np.minimum(w.val * lb, w.val * ub).sum())
            term = (w.expr * var).sum()
            expr = term if expr is None else expr + term
        d0 = -lowest + float(self.rng.uniform(0.5, 2.0))
        offset = self.param((), value=np.asarray(d0)) if self.draw(st.booleans()) else None
        const = offset.expr if offset is not None else lp.Constant(d0)
        return const + expr


OBJECTIVES = ["min_affine", "max_affine", "min_convex", "max_concave", "min_ratio", "max_ratio"]


@st.composite
def models(
    draw: Any,
    objectives: tuple[str, ...] = tuple(OBJECTIVES),
    max_depth: int = 3,
    max_constraints: int = 4,
) -> ModelCase:
    """A random well-posed model with parameter values and a strictly feasible point."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    b = _Builder(draw, rng)
    for _ in range(draw(st.integers(1, 3))):
        b.variable()
    kind = draw(st.sampled_from(list(objectives)))
    depth = draw(st.integers(0, max_depth))
    objective = b.objective(depth, kind)
    constraints = [
        b.constraint(draw(st.integers(0, max_depth)))
        for _ in range(draw(st.integers(0, max_constraints)))
    ]
    problem = lp.Problem(objective, constraints)
    return ModelCase(problem, b.params, {v.expr: v.val for v in b.vars}, b.log)
