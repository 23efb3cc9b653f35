"""Every affine operation, compiled and solved, against the same model written in CVXPY."""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import lpdsl as lp


def test_broadcast_add_and_mul_by_parameter_matrix(compare, rng):
    x = lp.Variable(3, name="x", lb=-2, ub=2)
    P = lp.Parameter((2, 1), name="P")
    w = lp.Parameter(3, name="w")
    prob = lp.Problem(lp.Minimize(w @ x), [x + P <= 1.5, P * x >= -3])
    Pv, wv = rng.normal(size=(2, 1)), rng.normal(size=3)

    def build(Pv, wv):
        cx = cp.Variable(3)
        cons = [cx >= -2, cx <= 2, cx[None, :] + Pv <= 1.5, cp.multiply(Pv, cx[None, :]) >= -3]
        return cp.Problem(cp.Minimize(wv @ cx), cons), {x: cx}

    compare(prob, [Pv, wv], build)


def test_an_empty_list_index_selects_nothing():
    # x[[]] was refused: "arrays used as indices must be of integer (or boolean) type"
    x = lp.Variable(3, name="x", lb=0, ub=1)
    X = lp.Variable((2, 3), name="X", lb=0, ub=1)
    assert x[[]].shape == (0,) and X[:, []].shape == (2, 0) and X[[]].shape == (0, 3)
    prob = lp.Problem(lp.Maximize(x.sum() + x[[]].sum() + X[[], 1].sum()), [x[[]] <= -1])
    compiled = prob.compile()
    assert compiled.n_rows == 6 + 12  # the empty constraint adds no row: only the bounds
    (xs, _) = lp.LPLayer(prob)()
    assert xs.tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)


def test_index_forms(compare, rng):
    X = lp.Variable((3, 4), name="X", lb=-1, ub=1)
    C = lp.Parameter((3, 4), name="C")
    mask = np.array([True, False, True])
    rows = X[mask]  # boolean mask
    cons = [
        X[1, 2] >= 0.5,  # integers
        X[-1, -1] <= -0.25,  # negative integers
        X[:, ::2].sum() >= -1,  # slices with steps
        X[[0, 2], 1] <= 0.1,  # index arrays
        rows[:, 3] >= -0.5,
        X[1:, ::-1][0, 0] == 0.3,  # chained, reversed slice
    ]
    prob = lp.Problem(lp.Minimize((C * X).sum()), cons)
    Cv = rng.normal(size=(3, 4))

    def build(Cv):
        cX = cp.Variable((3, 4))
        cc = [
            cX >= -1,
            cX <= 1,
            cX[1, 2] >= 0.5,
            cX[2, 3] <= -0.25,
            cp.sum(cX[:, ::2]) >= -1,
            cX[[0, 2], 1] <= 0.1,
            cX[[0, 2], 3] >= -0.5,
            cX[1, 3] == 0.3,
        ]
        return cp.Problem(cp.Minimize(cp.sum(cp.multiply(Cv, cX))), cc), {X: cX}

    compare(prob, [Cv], build)


def test_reshape_transpose_concatenate(compare, rng):
    X = lp.Variable((2, 3), name="X", lb=-1, ub=1)
    y = lp.Variable(3, name="y", lb=-1, ub=1)
    p = lp.Parameter(3, name="p")
    Q = lp.Parameter((3, 2), name="Q")
    stacked = lp.vstack([X, y, p])  # (4, 3), parameter row mixed in
    wide = lp.hstack([X.T, Q])  # (3, 4)
    prob = lp.Problem(
        lp.Maximize(X.reshape(6) @ np.arange(6.0) - y.sum()),
        [stacked.sum(axis=0) <= 1, wide.T.reshape((2, 6)).sum(axis=1) >= -2, X.T - y[:, None] <= Q],
    )
    pv, Qv = rng.normal(size=3), rng.normal(size=(3, 2))

    def build(pv, Qv):
        cX, cy = cp.Variable((2, 3)), cp.Variable(3)
        st = cp.vstack([cX, cp.reshape(cy, (1, 3), order="C"), pv[None, :]])
        wd = cp.hstack([cX.T, Qv])
        cons = [
            cX >= -1,
            cX <= 1,
            cy >= -1,
            cy <= 1,
            cp.sum(st, axis=0) <= 1,
            cp.sum(cp.reshape(wd.T, (2, 6), order="C"), axis=1) >= -2,
            cX.T - cp.reshape(cy, (3, 1), order="C") <= Qv,
        ]
        obj = cp.reshape(cX, (6,), order="C") @ np.arange(6.0) - cp.sum(cy)
        return cp.Problem(cp.Maximize(obj), cons), {X: cX, y: cy}

    compare(prob, [pv, Qv], build)


def test_matmul_both_sides_and_1d_cases(compare, rng):
    x = lp.Variable(3, name="x", lb=-1, ub=1)
    X = lp.Variable((3, 2), name="X", lb=-1, ub=1)
    P = lp.Parameter((4, 3), name="P")
    q = lp.Parameter(2, name="q")
    r = lp.Parameter(3, name="r")
    S = lp.Parameter((2, 2), name="S")
    cons = [
        P @ x <= 1,  # parameter matrix @ variable vector
        X @ q >= -1,  # variable matrix @ parameter vector
        r @ X <= 1,  # parameter vector @ variable matrix
        P @ X <= 2,  # parameter matrix @ variable matrix
        X @ S >= -2,  # variable matrix @ parameter matrix
    ]
    prob = lp.Problem(lp.Maximize(r @ x + (x @ P.T).sum()), cons)
    vals = [
        rng.normal(size=(4, 3)),
        rng.normal(size=2),
        rng.normal(size=3),
        rng.normal(size=(2, 2)),
    ]

    def build(Pv, qv, rv, Sv):
        cx, cX = cp.Variable(3), cp.Variable((3, 2))
        cc = [
            cx >= -1,
            cx <= 1,
            cX >= -1,
            cX <= 1,
            Pv @ cx <= 1,
            cX @ qv >= -1,
            rv @ cX <= 1,
            Pv @ cX <= 2,
            cX @ Sv >= -2,
        ]
        return cp.Problem(cp.Maximize(rv @ cx + cp.sum(cx @ Pv.T)), cc), {x: cx, X: cX}

    compare(prob, vals, build)


def test_division_and_products_of_parameters(compare, rng):
    x = lp.Variable(4, name="x", lb=-3, ub=3)
    p = lp.Parameter(4, name="p")
    q = lp.Parameter(4, name="q")
    s = lp.Parameter(name="s")
    cons = [
        x / (p * p + 1) <= 1,  # division by a parameter expression
        (p * q) * x >= -2,  # product of parameters as coefficient
        p * (q * x) <= 2,  # nested: two factors
        (x + p) / s >= -4 / s,  # offset divided too; scalar parameter broadcast
    ]
    prob = lp.Problem(lp.Minimize(((q / s) @ x) + (p * q).sum()), cons)
    pv, qv = rng.normal(size=4), rng.normal(size=4)
    sv = np.array(1.7)

    def build(pv, qv, sv):
        cx = cp.Variable(4)
        cc = [
            cx >= -3,
            cx <= 3,
            cp.multiply(1 / (pv * pv + 1), cx) <= 1,
            cp.multiply(pv * qv, cx) >= -2,
            cp.multiply(pv, cp.multiply(qv, cx)) <= 2,
            (cx + pv) / sv >= -4 / sv,
        ]
        return cp.Problem(cp.Minimize((qv / sv) @ cx + np.sum(pv * qv)), cc), {x: cx}

    compare(prob, [pv, qv, sv], build)


def test_bounds_nonneg_and_array_bounds(compare, rng):
    lb = np.array([-1.0, -np.inf, 0.5])
    x = lp.Variable(3, name="x", nonneg=True, lb=lb, ub=[2.0, 3.0, np.inf])
    z = lp.Variable(name="z", lb=-1)
    w = lp.Parameter(3, name="w")
    prob = lp.Problem(lp.Maximize(w @ x - z), [x.sum() <= 4 + z, z <= 2])
    wv = np.abs(rng.normal(size=3)) + 0.1

    def build(wv):
        cx, cz = cp.Variable(3), cp.Variable()
        cc = [
            cx >= np.array([0, 0, 0.5]),
            cx[:2] <= np.array([2.0, 3.0]),
            cz >= -1,
            cp.sum(cx) <= 4 + cz,
            cz <= 2,
        ]
        return cp.Problem(cp.Maximize(wv @ cx - cz), cc), {x: cx, z: cz}

    compare(prob, [wv], build)


def test_equalities_and_objective_offset(compare, rng):
    x = lp.Variable(3, name="x", lb=-5, ub=5)
    A = lp.Parameter((2, 3), name="A")
    b = lp.Parameter(2, name="b")
    prob = lp.Problem(lp.Minimize(x.sum() + b.sum() + 7), [A @ x == b, x[0] == x[1]])
    Av, bv = rng.normal(size=(2, 3)), rng.normal(size=2)

    def build(Av, bv):
        cx = cp.Variable(3)
        cc = [cx >= -5, cx <= 5, Av @ cx == bv, cx[0] == cx[1]]
        return cp.Problem(cp.Minimize(cp.sum(cx) + bv.sum() + 7), cc), {x: cx}

    compare(prob, [Av, bv], build)


def test_problem_without_parameters(compare):
    x = lp.Variable(2, name="x", nonneg=True)
    prob = lp.Problem(lp.Maximize(x[0] + 2 * x[1]), [x.sum() <= 1, x[1] <= 0.25])

    def build():
        cx = cp.Variable(2)
        cc = [cx >= 0, cp.sum(cx) <= 1, cx[1] <= 0.25]
        return cp.Problem(cp.Maximize(cx[0] + 2 * cx[1]), cc), {x: cx}

    compare(prob, [], build)


def test_dot_product_of_parameter_vectors_in_coefficients_and_offsets():
    """p @ q (both 1-D parameters) in an offset and as a coefficient (oracle hunt finding)."""
    p, q = lp.Parameter(2, name="p"), lp.Parameter(2, name="q")
    x = lp.Variable(name="x", lb=-1, ub=1)
    pv, qv = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    compiled = lp.Problem(lp.Minimize(p @ q + (p @ q) * x)).compile()
    A, b, c = compiled.standard_form(pv, qv)
    assert float(c[0]) == pytest.approx(1.0)
    x_opt = torch.tensor([-1.0], dtype=torch.float64)
    assert float(compiled.value(x_opt, pv, qv)) == pytest.approx(0.0)
    batched = compiled.standard_form(np.stack([pv, 2 * pv]), qv)[2]
    torch.testing.assert_close(batched[:, 0], torch.tensor([1.0, 2.0], dtype=torch.float64))
