"""Each piecewise-linear atom's epigraph, in every position the declaration layer allows."""

from __future__ import annotations

import cvxpy as cp
import numpy as np

import lpdsl as lp


def test_abs_pos_norm1_minimised(compare, rng):
    x = lp.Variable(4, name="x")
    A = lp.Parameter((3, 4), name="A")
    b = lp.Parameter(3, name="b")
    r = A @ x - b
    prob = lp.Problem(
        lp.Minimize(lp.norm1(r) + lp.pos(x - 1).sum() + 0.5 * lp.abs(x).sum()), [x >= -3]
    )
    Av, bv = rng.normal(size=(3, 4)), rng.normal(size=3)

    def build(Av, bv):
        cx = cp.Variable(4)
        obj = cp.norm1(Av @ cx - bv) + cp.sum(cp.pos(cx - 1)) + 0.5 * cp.sum(cp.abs(cx))
        return cp.Problem(cp.Minimize(obj), [cx >= -3]), {x: cx}

    compare(prob, [Av, bv], build)


def test_convex_atoms_bounded_above_in_constraints(compare, rng):
    x = lp.Variable(5, name="x", lb=-4, ub=4)
    M = lp.Variable((2, 3), name="M", lb=-2, ub=2)
    c = lp.Parameter(5, name="c")
    w = lp.Parameter(name="w", nonneg=True)
    cons = [
        lp.abs(x - 1) <= 2,
        lp.maximum(x, 2 * x - 1, c) <= 3,  # broadcast with a parameter operand
        lp.sum_largest(x, 2) <= 1.5,
        w * lp.max(M, axis=1) <= 1,  # nonneg parameter times a convex atom
        lp.max(M) <= 1.5,
        lp.norm1(M[0]) <= 2,
    ]
    prob = lp.Problem(lp.Maximize(c @ x + M.sum()), cons)
    cv = rng.normal(size=5)
    wv = np.array(1.3)

    def build(cv, wv):
        cx, cM = cp.Variable(5), cp.Variable((2, 3))
        cc = [
            cx >= -4,
            cx <= 4,
            cM >= -2,
            cM <= 2,
            cp.abs(cx - 1) <= 2,
            cp.maximum(cx, 2 * cx - 1, cv) <= 3,
            cp.sum_largest(cx, 2) <= 1.5,
            wv * cp.max(cM, axis=1) <= 1,
            cp.max(cM) <= 1.5,
            cp.norm1(cM[0]) <= 2,
        ]
        return cp.Problem(cp.Maximize(cv @ cx + cp.sum(cM)), cc), {x: cx, M: cM}

    compare(prob, [cv, wv], build)


def test_concave_atoms_bounded_below_and_maximised(compare, rng):
    x = lp.Variable(4, name="x", lb=-3, ub=3)
    M = lp.Variable((3, 2), name="M", lb=-1, ub=1)
    c = lp.Parameter(4, name="c")
    cons = [
        lp.minimum(x, 1 - x) >= -2,
        lp.min(M, axis=0) >= -0.5,
        -lp.abs(x) >= -2.5,  # a negated convex atom is concave
        x.sum() <= 1,
    ]
    prob = lp.Problem(lp.Maximize(lp.min(c * x) + lp.minimum(x, 0.5).sum() - M.sum()), cons)
    cv = rng.normal(size=4)

    def build(cv):
        cx, cM = cp.Variable(4), cp.Variable((3, 2))
        cc = [
            cx >= -3,
            cx <= 3,
            cM >= -1,
            cM <= 1,
            cp.minimum(cx, 1 - cx) >= -2,
            cp.min(cM, axis=0) >= -0.5,
            -cp.abs(cx) >= -2.5,
            cp.sum(cx) <= 1,
        ]
        obj = cp.min(cp.multiply(cv, cx)) + cp.sum(cp.minimum(cx, 0.5)) - cp.sum(cM)
        return cp.Problem(cp.Maximize(obj), cc), {x: cx, M: cM}

    compare(prob, [cv], build)


def test_sum_largest_with_k_at_least_size_is_the_sum(compare):
    x = lp.Variable(3, name="x", lb=-1, ub=1)
    prob = lp.Problem(lp.Minimize(lp.sum_largest(x, 3)), [x[0] >= 0.5])

    def build():
        cx = cp.Variable(3)
        return cp.Problem(cp.Minimize(cp.sum(cx)), [cx >= -1, cx <= 1, cx[0] >= 0.5]), {x: cx}

    compare(prob, [], build)


def test_atoms_of_parameter_data_are_evaluated(compare, rng):
    x = lp.Variable(3, name="x", lb=-2, ub=2)
    p = lp.Parameter(3, name="p")
    prob = lp.Problem(
        lp.Minimize((lp.abs(p) + lp.pos(-p)) @ x + lp.max(p) + lp.sum_largest(p, 2)),
        [x.sum() >= lp.norm1(p) - 4, x <= lp.maximum(p, 0) + lp.minimum(p, 1)],
    )
    pv = rng.normal(size=3)

    def build(pv):
        cx = cp.Variable(3)
        top2 = np.sort(pv)[-2:].sum()
        cc = [
            cx >= -2,
            cx <= 2,
            cp.sum(cx) >= np.abs(pv).sum() - 4,
            cx <= np.maximum(pv, 0) + np.minimum(pv, 1),
        ]
        obj = (np.abs(pv) + np.maximum(-pv, 0)) @ cx + pv.max() + top2
        return cp.Problem(cp.Minimize(obj), cc), {x: cx}

    compare(prob, [pv], build)
