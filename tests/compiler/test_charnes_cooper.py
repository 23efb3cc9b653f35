"""Linear-fractional objectives (paper §2.4, App. A.2) through the Charnes–Cooper pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import cvxpy as cp
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

import lpdsl as lp
from lpdsl.solvers.ratio import dual_error, in_t_unit, solve_ratio_lp, t_times


def bisect_max_ratio(
    build: Callable[[cp.Variable], tuple[cp.Expression, cp.Expression, list]], n: int
) -> float:
    """max num/den (den > 0) by bisection on gamma: is max num - gamma den >= 0?"""
    lo, hi = -10.0, 10.0
    x = cp.Variable(n)
    num, den, cons = build(x)
    gamma = cp.Parameter()
    prob = cp.Problem(cp.Maximize(num - gamma * den), cons)
    for _ in range(50):
        gamma.value = 0.5 * (lo + hi)
        prob.solve(solver=cp.CLARABEL)
        lo, hi = (gamma.value, hi) if prob.value >= 0 else (lo, gamma.value)
    return 0.5 * (lo + hi)


def fscore_problem(n: int) -> tuple[lp.Problem, lp.Parameter, lp.Parameter, lp.Variable]:
    """The F-score LP of paper §2.4 / App. A.2.1: max 2 y·z / (1·z + 1·y), phi <= z <= 1 + phi."""
    phi = lp.Parameter(n, name="phi")
    y = lp.Parameter(n, name="y", nonneg=True)
    z = lp.Variable(n, name="z", lb=0, ub=1)
    prob = lp.Problem(lp.Maximize((2 * y) @ z / (z.sum() + y.sum())), [z >= phi, z <= 1 + phi])
    return prob, phi, y, z


def test_fscore_matches_sklearn_when_scores_saturate(solve_lp, rng):
    n = 12
    prob, _phi, _y, z = fscore_problem(n)
    compiled = prob.compile()
    labels = rng.integers(0, 2, size=(3, n)).astype(float)
    labels[:, 0] = 1
    preds = np.sign(rng.normal(size=(3, n)))
    A, b, c = compiled.standard_form(torch.as_tensor(preds), torch.as_tensor(labels))
    for i in range(3):
        res = solve_lp(A[i], b[i], c[i])
        assert res.status == 0
        x = torch.as_tensor(res.x)
        expected = f1_score(labels[i], preds[i] > 0)
        assert float(compiled.value(x, preds[i], labels[i])) == pytest.approx(expected, abs=1e-7)
        zhat = compiled.recover(x)[z].numpy()
        np.testing.assert_allclose(zhat, (preds[i] > 0).astype(float), atol=1e-7)


def test_fscore_with_soft_scores_matches_bisection(solve_lp, rng):
    n = 8
    prob, _phi, _y, z = fscore_problem(n)
    phiv = np.tanh(rng.normal(size=n))
    yv = rng.integers(0, 2, size=n).astype(float)
    yv[:2] = 1
    A, b, c = prob.compile().standard_form(phiv, yv)
    res = solve_lp(A, b, c)
    assert res.status == 0
    x = torch.as_tensor(res.x)
    compiled = prob.compile()
    value = float(compiled.value(x, phiv, yv))

    def build(cz):
        return 2 * yv @ cz, cp.sum(cz) + yv.sum(), [cz >= 0, cz <= 1, cz >= phiv, cz <= 1 + phiv]

    assert value == pytest.approx(bisect_max_ratio(build, n), abs=1e-6)
    zhat = compiled.recover(x)[z].numpy()
    assert np.all(zhat >= np.maximum(phiv, 0) - 1e-7) and np.all(zhat <= 1 + 1e-7)
    assert 2 * yv @ zhat / (zhat.sum() + yv.sum()) == pytest.approx(value, abs=1e-7)


def test_general_ratio_minimised_with_parameters_everywhere(solve_lp, rng):
    n = 5
    x = lp.Variable(n, name="x", lb=-1, ub=2)
    a = lp.Parameter(n, name="a")
    d = lp.Parameter(n, name="d")
    G = lp.Parameter((2, n), name="G")
    prob = lp.Problem(lp.Minimize((a @ x - 1) / (d @ x + 4 * n)), [G @ x <= 1, x.sum() == 1.5])
    av, dv, Gv = rng.normal(size=n), np.abs(rng.normal(size=n)), rng.normal(size=(2, n))
    compiled = prob.compile()
    A, b, c = compiled.standard_form(av, dv, Gv)
    res = solve_lp(A, b, c)
    assert res.status == 0
    xt = torch.as_tensor(res.x)
    value = float(compiled.value(xt, av, dv, Gv))

    def build(cx):  # min num/den = -max (-num)/den
        cons = [cx >= -1, cx <= 2, Gv @ cx <= 1, cp.sum(cx) == 1.5]
        return -(av @ cx - 1), dv @ cx + 4 * n, cons

    assert value == pytest.approx(-bisect_max_ratio(build, n), abs=1e-6)
    xr = compiled.recover(xt)[x].numpy()
    assert np.all(Gv @ xr <= 1 + 1e-7) and xr.sum() == pytest.approx(1.5)
    assert (av @ xr - 1) / (dv @ xr + 4 * n) == pytest.approx(value, abs=1e-9)


def test_optimum_at_infinity_gives_t_zero_and_nan(solve_lp):
    # inf 1 / (x + 1) over x >= 0 is 0, approached only as x -> inf: the LP optimum has t = 0.
    x = lp.Variable(name="x", nonneg=True)
    prob = lp.Problem(lp.Minimize(lp.Constant(1.0) / (x + 1)))
    compiled = prob.compile()
    A, b, c = compiled.standard_form()
    res = solve_lp(A, b, c)
    assert res.status == 0 and res.fun == pytest.approx(0.0, abs=1e-9)
    xt = torch.as_tensor(res.x)
    assert torch.isnan(compiled.recover(xt)[x]).all()
    assert torch.isnan(compiled.value(xt))


def test_denominator_reaching_zero_makes_the_lp_unbounded(solve_lp):
    # max 1 / x over 0 <= x <= 1: den = 0 is feasible, the ratio is unbounded; so is the LP.
    x = lp.Variable(name="x", lb=0, ub=1)
    prob = lp.Problem(lp.Maximize(lp.Constant(1.0) / x))
    A, b, c = prob.compile().standard_form()
    assert solve_lp(A, b, c).status == 3  # HiGHS: unbounded


def test_float32_result_of_a_float64_solve_recovers_large_finite_points():
    """t / max|y| = 1 / max|x|: judged by float32's eps a ratio optimum with |x| >= 8,389 was
    NaN (LPLayer raised "den > 0 violated") although lpdsl.solve works in float64."""
    x = lp.Variable(name="x", lb=1.0, ub=1e4)
    w = lp.Parameter(name="w")
    prob = lp.Problem(lp.Maximize(w * x / (x + 1.0)))
    one = torch.tensor(1.0)  # float32 data
    (got,) = lp.LPLayer(prob, parameters=[w], variables=[x])(one)
    assert got.dtype == torch.float32 and float(got) == 1e4
    compiled = prob.compile()
    sol = lp.solve(*compiled.standard_form(one))
    assert sol.y.dtype == torch.float64
    assert float(compiled.recover(sol.x, precision=sol.y.dtype)[x]) == 1e4
    value = compiled.value(sol.x, one, precision=torch.float64)
    assert value.dtype == torch.float32 and float(value) == pytest.approx(1e4 / 10001)
    assert compiled.recover(sol.x)[x].isnan()  # judged in float32: documented limit 8,389


@pytest.mark.parametrize("u", [2e8, 1e9])
def test_large_constants_are_measured_in_the_unit_of_t(u):
    """x_0 <= u becomes y_0 - u t <= 0; judged against that row's norm a violation of 1e-9
    is x_0 = 2u, and LPLayer certified exactly that (dx_0/du = 2e-9) until a large certified x
    was solved again with t in the unit 1/|x| (solvers.ratio.solve_ratio_lp)."""
    x = lp.Variable(2, name="x", nonneg=True)
    up = lp.Parameter(name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 0.5 * x[1]) / (x.sum() + 1)), [x[0] <= up, x[1] <= 1])
    value = torch.tensor(u, dtype=torch.float64, requires_grad=True)
    (got,) = lp.LPLayer(prob)(value)
    assert (
        float(got[0].detach()) == pytest.approx(u, rel=1e-9) and abs(float(got[1].detach())) <= 1e-9
    )
    (grad,) = torch.autograd.grad(got[0], value)
    assert float(grad) == pytest.approx(1.0, rel=1e-6)
    assert lp.check(prob, u).ok


def test_in_t_unit_rescales_the_last_column_exactly():
    A = torch.tensor([[1.0, -3e9], [1.0, 5e12], [0.0, -1.0]])
    unit = torch.tensor(2.0**-32)
    A_t, c_t = in_t_unit(A, torch.tensor([0.0, 2.0]), unit)
    assert A_t[0, 1] == -3e9 * 2.0**-32 and c_t[1] == 2.0**-31 and torch.equal(A_t[:, 0], A[:, 0])
    assert torch.equal(t_times(torch.tensor([1.0, 4.0]), 1 / unit), torch.tensor([1.0, 2.0**34]))


@pytest.mark.parametrize("U", [1e9, 1e12])
def test_large_constants_inactive_at_a_small_optimum(U):
    """max (x0 + 2 x1) / (x0 + x1 + 1), 0 <= x <= (U, 2): the optimum is x = (0, 2). A unit of
    t chosen from the largest constant (1/U) ended MAX_ITER at U = 1e9 and OPTIMAL at x0 =
    9.6e11 at U = 1e12 (a reviewing helper); only a large certified x is solved again."""
    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(2, name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 2 * x[1]) / (x.sum() + 1)), [x <= u])
    (got,) = lp.LPLayer(prob, warm_start=False)(torch.tensor([U, 2.0], dtype=torch.float64))
    assert got.tolist() == pytest.approx([0.0, 2.0], abs=1e-9)


#: Random ratio models min (a.x + a0) / (d.x + d0), G x <= h, 0 <= x <= u (a verifying
#: helper's families, data rounded to 3 decimals) that ended MAX_ITER before the unit ladder:
#: |x| ~ 1e9 on one coordinate, |x| ~ 1e6, and a denominator constant 1e9 at |x| ~ 1. The
#: expected x: Dinkelbach with HiGHS for the active set, then its vertex in float64.
MAX_ITER_BEFORE_THE_LADDER = {
    "mixed_1e9": (
        [-0.922, -0.458, 0.22, -1.01], -0.209, [0.159, 0.541, 0.215, 0.355], 33649641.521,
        [[-0.704, -1.265, -0.623, 0.041], [-2.325, -0.219, -1.246, -0.732],
         [-0.544, -0.316, 0.412, 1.043]],
        [-408200678.919, -1175946887.907, -45136560.245], [1719905358.8, 1.869, 1.41, 1.594],
        [1719905358.8, 0.0, 0.0, 0.0],
    ),
    "den_constant_1e9": (
        [-0.115, -0.605, -0.594, -0.283], -0.728, [0.766, 1.596, 0.824, 0.626], 1e9,
        [[1.619, -1.206, -0.627, -1.321], [-0.108, 0.999, -0.022, 0.496],
         [-1.911, 0.147, -0.907, 1.775]],
        [0.405, 2.002, 0.376], [0.876, 1.92, 0.784, 0.769],
        [0.876, 1.92, 0.784, 0.39470967741935464],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MAX_ITER_BEFORE_THE_LADDER))
def test_ratio_items_ending_max_iter_are_solved_with_t_in_smaller_units(case):
    """At |x| ~ 1e9 the first solve's iterate ran off to |y| ~ 1e15 with t < 0 (no estimate
    of |x| to rescale t by) and the item ended MAX_ITER; with t in the units 2^-8, 2^-16, ...
    the largest that certifies gives the optimum. The denominator-constant case ended MAX_ITER
    at |x| ~ 1 and certifies from 2^-8 (its point in [1/256, 256] / unit: it counts)."""
    *data, expected = MAX_ITER_BEFORE_THE_LADDER[case]
    a, a0, d, d0, G, h, u = (torch.tensor(v, dtype=torch.float64) for v in data)
    x = lp.Variable(4, name="x", lb=0.0)
    pa, pd, pG, ph, pu = (lp.Parameter(v.shape) for v in (a, d, G, h, u))
    pa0, pd0 = lp.Parameter(), lp.Parameter()
    prob = lp.Problem(lp.Minimize((pa @ x + pa0) / (pd @ x + pd0)), [pG @ x <= ph, x <= pu])
    layer = lp.LPLayer(prob, parameters=[pa, pa0, pd, pd0, pG, ph, pu], warm_start=False)
    (got,) = layer(a, a0, d, d0, G, h, u)
    assert int(layer.last_solution.status) == 0
    assert got.tolist() == pytest.approx(expected, rel=1e-9, abs=1e-9 * float(u.max()))


@pytest.mark.parametrize("U", [1e12, 1e15])
def test_the_unit_ladder_passes_the_right_scale_before_too_small_units(monkeypatch, U):
    """With t in the unit 2^-40 the model of test_large_constants_inactive_at_a_small_optimum
    is certified OPTIMAL at x_0 = 9.6e11 (optimum x = (0, 2)). Were its first solve to end
    MAX_ITER, the ladder must stop at the largest unit that certifies, not below."""
    import lpdsl.solvers.ratio as ratio

    solve, calls = ratio.solve, []

    def first_fails(*args, **kwargs):
        sol = solve(*args, **kwargs)
        calls.append(sol.status.clone())
        if len(calls) == 1:
            sol = dataclasses.replace(sol, status=torch.full_like(sol.status, 3))
        return sol

    monkeypatch.setattr(ratio, "solve", first_fails)
    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(2, name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 2 * x[1]) / (x.sum() + 1)), [x <= u])
    A, b, c = prob.compile().standard_form(torch.tensor([U, 2.0], dtype=torch.float64))
    sol = solve_ratio_lp(A, b, c)
    assert len(calls) == 2 and int(sol.status) == 0
    assert (sol.x[:-1] / sol.x[-1]).tolist() == pytest.approx([0.0, 2.0], abs=1e-9)
    A_t, c_t = in_t_unit(A, c, torch.tensor(2.0**-40, dtype=A.dtype))
    far = solve(A_t, b, c_t)  # once a wrong point: 2^-40 x_0 = y_0 / t' ~ 1, certified
    assert int(far.status) != 0 or float(far.x[0] / far.x[-1]) < 1e-6  # now refused


def test_a_wrong_point_certified_in_a_too_small_unit_is_refused(monkeypatch):
    """With t in the unit 2^-40 the solver certified x_0 = 9.6e11 for the model whose optimum
    is x = (0, 2): its t column is off by a third of its terms, which the stationarity test,
    relative to the row-scaled column's largest entry, does not see. The improvability test
    (certificate._improvable, fifteenth pass) now refuses it; without that test the point still
    passes the certificate, and were the ladder to reach that unit first (every larger unit
    failing), the point must be refused in the data's units."""
    import lpdsl.solvers.certificate as certificate
    import lpdsl.solvers.ratio as ratio

    solve = ratio.solve

    def only_the_smallest_unit(A, b, c, **kwargs):
        sol = solve(A, b, c, **kwargs)
        t_col = A[..., 0, -1]  # x_0 - U t <= 0: the entry of t is -U times the unit
        if float(t_col.abs().max()) > 1e12 * 2.0**-36:
            return dataclasses.replace(sol, status=torch.full_like(sol.status, 3))
        return sol

    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(2, name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 2 * x[1]) / (x.sum() + 1)), [x <= u])
    A, b, c = prob.compile().standard_form(torch.tensor([1e12, 2.0], dtype=torch.float64))
    A_t, c_t = in_t_unit(A, c, torch.tensor(2.0**-40, dtype=A.dtype))
    assert int(solve(A_t, b, c_t).status) != 0
    monkeypatch.setattr(certificate, "_improvable", lambda P, x, v, a, ok, tol: (ok & False, None))
    far = solve(A_t, b, c_t)
    wrong = t_times(far.x, torch.tensor(2.0**-40, dtype=A.dtype))
    assert int(far.status) == 0 and float(wrong[0] / wrong[-1]) > 1e11  # the wrong point
    assert float(dual_error(A, c, wrong, far.dual, b)) > 0.1
    right = solve(A, b, c)
    assert float(dual_error(A, c, right.x, right.dual, b)) < 1e-12
    monkeypatch.setattr(ratio, "solve", only_the_smallest_unit)
    assert int(solve_ratio_lp(A, b, c).status) == 3  # MAX_ITER, not the wrong point


@pytest.mark.parametrize("den", ["small", "shallow"])
def test_denominator_slightly_negative_is_caught(den):
    """The check's tolerance was absolute (1 + |q0| + |q.x| times 1.5e-5): den = 1e-6 (x - 0.5)
    and x - 1e-5 on [0, 1] went through, with OPTIMAL x = 1 (a verifying helper)."""
    a = lp.Parameter(name="a")
    x = lp.Variable(name="x", lb=0.0, ub=1.0)
    d = 1e-6 * (x - 0.5) if den == "small" else x - 1e-5
    with pytest.raises(lp.SolverError, match="denominator is negative elsewhere"):
        lp.LPLayer(lp.Problem(lp.Minimize((x + a) / d)))(torch.tensor(1.0, dtype=torch.float64))


def test_denominator_changing_sign_fails_instead_of_a_partial_optimum():
    """min (x + 2) / x over -1 <= x <= 1 is unbounded below (x -> 0 from the left); Charnes-
    Cooper optimises over den > 0 only and returned x = 1 (ratio 3) as OPTIMAL. LPLayer now
    solves min den over the feasible set too and fails such items."""
    a = lp.Parameter(name="a")
    x = lp.Variable(name="x", lb=-1.0, ub=1.0)
    prob = lp.Problem(lp.Minimize((x + a) / x))
    two = torch.tensor([2.0, 2.0], dtype=torch.float64)
    with pytest.raises(lp.SolverError, match=r"denominator is negative elsewhere.*positive on"):
        lp.LPLayer(prob)(two)
    assert torch.isnan(lp.LPLayer(prob, strict=False)(two)[0]).all()
    with pytest.raises(lp.DSLError, match="check_denominator"):
        lp.LPLayer(prob, check_denominator="no")  # a string was read as True
    (got,) = lp.LPLayer(prob, check_denominator=False)(two)  # the partial optimum, unchecked
    assert got.tolist() == [1.0, 1.0]
    # den reaching 0 only on the boundary (0 <= x <= 1) is fine: the minimum is at x = 1
    y = lp.Variable(name="y", lb=0.0, ub=1.0)
    (got,) = lp.LPLayer(lp.Problem(lp.Minimize((y + a) / y)))(two)
    assert got.tolist() == pytest.approx([1.0, 1.0])


def test_denominator_check_uses_the_layers_tolerance():
    """The check used 10 times the default tolerance whatever the layer's ``tol``: den =
    x - 1e-7 on [0, 1] failed under ``tol=1e-6``, within which it is not negative."""
    a = lp.Parameter(name="a")
    x = lp.Variable(name="x", lb=0.0, ub=1.0)
    prob = lp.Problem(lp.Minimize((x + a) / (x - 1e-7)))
    one = torch.tensor(1.0, dtype=torch.float64)
    with pytest.raises(lp.SolverError, match="denominator is negative elsewhere"):
        lp.LPLayer(prob)(one)
    (got,) = lp.LPLayer(prob, tol=1e-6)(one)
    assert float(got) == pytest.approx(1.0)


def test_denominator_lp_not_solved_fails_the_item(monkeypatch):
    """A denominator LP ending MAX_ITER (or INFEASIBLE, which the main LP's optimum refutes)
    proves nothing; it counted as den > 0."""
    import lpdsl.layers

    a = lp.Parameter(name="a")
    x = lp.Variable(name="x", lb=0.0, ub=1.0)
    prob = lp.Problem(lp.Minimize((x + a) / (x + 1.0)))
    two = torch.tensor([2.0, 2.0], dtype=torch.float64)
    real = lpdsl.layers.solve

    def den_lp_stalls(A, b, c, **kw):
        sol = real(A, b, c, **kw)
        if c.shape[-1] == 2:  # the main LP, in (y, t)
            return sol
        status = torch.tensor([int(lp.Status.MAX_ITER), int(lp.Status.OPTIMAL)])
        return dataclasses.replace(sol, status=status)

    monkeypatch.setattr(lpdsl.layers, "solve", den_lp_stalls)
    with pytest.raises(lp.SolverError, match=r"min den over the feasible set was not solved"):
        lp.LPLayer(prob)(two)
    (got,) = lp.LPLayer(prob, strict=False)(two)
    assert torch.isnan(got[0]) and float(got[1]) == pytest.approx(1.0)
    (got,) = lp.LPLayer(prob, check_denominator=False)(two)
    assert got.tolist() == pytest.approx([1.0, 1.0])


def test_solve_ratio_lp_broadcasts_like_solve():
    """Its second solve rescaled t on A and c as given: an unbatched A or c next to a batched
    other input failed in torch.cat, where lpdsl.solve broadcasts (a helper's probe)."""
    from lpdsl.solvers.ratio import solve_ratio_lp

    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 0.5 * x[1]) / (x.sum() + 1)), [x[0] <= u, x[1] <= 1])
    A, b, c = prob.compile().standard_form(torch.tensor(1e6, dtype=torch.float64))
    for args in ((A, b, torch.stack([c, 2 * c])), (torch.stack([A, A]), b, c)):
        sol = solve_ratio_lp(*args)
        assert sol.status.tolist() == [0, 0]
        assert (sol.x[:, 0] / sol.x[:, -1]).tolist() == pytest.approx([1e6, 1e6])


def test_check_judges_a_float32_ratio_model_in_the_solve_precision():
    """check recovered x = y / t in the values' dtype: with float32 values (solved in float64)
    a correct optimum at x = 9000 failed as "t = 0", float32's cap being 8,389."""
    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(name="u")
    prob = lp.Problem(lp.Maximize((x[0] + 0.5 * x[1]) / (x.sum() + 1)), [x[0] <= u, x[1] <= 1])
    assert lp.check(prob, torch.tensor(9000.0)).ok


def test_rescale_t_is_a_checked_flag_and_off_in_the_metric_losses(monkeypatch):
    import lpdsl.layers as layers
    from lpdsl.metrics import FBetaLoss

    x = lp.Variable(name="x", lb=0.0, ub=1.0)
    prob = lp.Problem(lp.Minimize((x + 1.0) / (x + 2.0)))
    with pytest.raises(lp.DSLError, match="rescale_t"):
        lp.LPLayer(prob, rescale_t="no")
    (got,) = lp.LPLayer(prob, rescale_t=False)()
    assert float(got) == pytest.approx(0.0, abs=1e-9)
    calls = []
    monkeypatch.setattr(layers, "solve_ratio_lp", lambda *a, **k: calls.append(a))
    value = FBetaLoss(1.0)(torch.tensor([0.2, -0.1, 0.4]), torch.tensor([1.0, 0.0, 1.0]))
    assert torch.isfinite(value) and not calls  # no re-solves: their x lies in [0, 1]


def test_ratio_re_solves_try_each_unit_once_and_count_every_iteration(monkeypatch):
    """With every re-solved point refused, an item certified at |x| = 1e9 was solved in its own
    unit, then at 2^-8 (a point above the window), then in its own unit again, ... : the same
    LP four times in nine solves (a reviewing helper). Its iterations were the last solve's."""
    import lpdsl.solvers.ratio as ratio

    x = lp.Variable(2, name="x", nonneg=True)
    u = lp.Parameter(2, name="u")
    prob = lp.Problem(lp.Maximize((2 * x[0] + x[1]) / (x.sum() + 1)), [x <= u])
    A, b, c = prob.compile().standard_form(torch.tensor([1e9, 2.0], dtype=torch.float64))
    real, units, iterations = ratio.solve, [], []

    def spy(A_, b_, c_, **kw):
        sol = real(A_, b_, c_, **kw)
        units.append(float(A_[..., :, -1].abs().max()))
        iterations.append(int(sol.iterations.sum()))
        return sol

    monkeypatch.setattr(ratio, "solve", spy)
    monkeypatch.setattr(ratio, "dual_error", lambda A_, c_, *a: torch.ones(c_.shape[0]))
    sol = solve_ratio_lp(A, b, c)
    assert len(units) == len(set(units)) <= 7  # the first solve and at most 6 re-solves
    assert int(sol.status) == 0  # its first, unit-1 certificate stands
    assert int(sol.iterations) == sum(iterations)


def test_an_estimate_of_the_ratio_moves_the_cost_not_the_solution():
    # Dinkelbach's shift: num - kappa den equals num on the LP's feasible set (den = 1), so
    # every estimate gives the same solution; near the optimum from below, fewer Newton steps
    n = 64
    prob_plain, phi, y, z = fscore_problem(n)
    kappa = lp.Parameter(name="kappa")
    objective = lp.Maximize(prob_plain.objective.expr, estimate=kappa)
    prob = lp.Problem(objective, prob_plain.constraints)
    assert prob.parameters() == [phi, y, kappa]
    assert "(estimate kappa)" in str(prob) and r"\text{estimate } \kappa" in prob.to_latex()
    compiled, plain = prob.compile(), prob_plain.compile()
    g = torch.Generator().manual_seed(3)
    yv = (torch.rand(n, generator=g) < 0.5).double()
    yv[0] = 1.0
    phiv = torch.tanh(torch.randn(n, generator=g, dtype=torch.float64) + yv - 0.5)
    A0, b0, c0 = plain.standard_form(phiv, yv)
    ref = lp.solve(A0, b0, c0)
    best = float(plain.value(ref.x, phiv, yv))
    steps = {}
    for k in (0.0, 0.9 * best, best, -3.0, 50.0):
        kv = torch.tensor(k, dtype=torch.float64)
        A, b, c = compiled.standard_form(phiv, yv, kv)
        assert torch.equal(b, b0)
        # the cost is -(num - kappa den) for Maximize; den - 1 <= 0 is the second-last row
        den_row = A.to_dense()[-2] if isinstance(A, lp.SparseMatrix) else A[-2]
        shifted = c0 + k * den_row
        if shifted.norm() > 100 * c0.norm():  # kappa = 50 outgrows num: the shift is left out
            shifted = c0
        torch.testing.assert_close(c, shifted, rtol=0, atol=1e-15)
        sol = lp.solve(A, b, c)
        assert int(sol.status) == int(lp.Status.OPTIMAL)
        assert float(compiled.value(sol.x, phiv, yv, kv)) == pytest.approx(best, abs=1e-9)
        steps[k] = int(sol.iterations)
    assert steps[0.9 * best] < steps[0.0], steps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_an_estimate_that_outgrows_the_ratio_is_left_out(dtype, layout):
    # with the shift in the objective's coefficients an estimate of 1e8 (1e9 with float64
    # values) for a ratio of ~1.4 sank num's part of the cost below the certificate's
    # tolerances: a point of ratio 1.0 was certified OPTIMAL (a reviewing helper, twentieth
    # pass); per item, the shift is left out where the cost would grow more than 100 times
    x = lp.Variable(2, name="x", lb=0, ub=1)
    cap, kappa = lp.Parameter(name="cap"), lp.Parameter(name="kappa")
    caps = torch.tensor([1.5, 1.2, 1.8], dtype=dtype)
    best = [4.0 / 3.0, 7.0 / 6.0, 13.0 / 9.0]  # x0 = cap - 1, x1 = 1
    for k in [1.0, 1e3, 1e8, 1e11, -1e9, 1.0]:
        for estimate in (kappa, k):
            prob = lp.Problem(
                lp.Maximize((2 * x[0] + x[1]) / (x[0] + 1), estimate=estimate), [x.sum() <= cap]
            )
            params = [cap, kappa] if estimate is kappa else [cap]
            layer = lp.LPLayer(prob, parameters=params, variables=[x], layout=layout)
            values = (caps, torch.full_like(caps, k)) if estimate is kappa else (caps,)
            (xs,) = layer(*values)
            ratio = (2 * xs[:, 0] + xs[:, 1]) / (xs[:, 0] + 1)
            tol = 1e-4 if dtype == torch.float32 else 1e-8
            torch.testing.assert_close(ratio, torch.tensor(best, dtype=dtype), atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_an_estimate_is_left_out_with_half_values(dtype):
    # the shifted cost num - k den was rounded back to bfloat16: num's part carried k times
    # its rounding, and max p.x / (x0 + x1 + 1) over x0 + x1 <= 1 took x = (1, 0) where p1 > p0
    # makes (0, 1) the optimum (a verifying helper, 21st pass)
    x = lp.Variable(2, name="x", lb=0, ub=1)
    p, k = lp.Parameter(2, name="p"), lp.Parameter(name="k")
    prob = lp.Problem(lp.Maximize((p @ x) / (x[0] + x[1] + 1), estimate=k), [x[0] + x[1] <= 1])
    pv = torch.tensor([1.0, 1.0 + 2.0**-7], dtype=dtype)
    for kv in (30.0, 60.0):
        kt = torch.tensor(kv, dtype=dtype)
        c = prob.compile().standard_form(pv, kt)[2]
        assert torch.equal(c, prob.compile().standard_form(pv, torch.zeros_like(kt))[2])
        (xs,) = lp.LPLayer(prob, parameters=[p, k], variables=[x])(pv, kt)
        assert torch.allclose(xs.float(), torch.tensor([0.0, 1.0]), atol=1e-6)


def test_an_estimate_beyond_the_values_dtype_is_left_out():
    # with float16 values an estimate of 1e5, and with float32 values p * p at p = 1e20,
    # overflowed the shifted cost to inf and NaN (a verifying helper, twentieth pass)
    x = lp.Variable(2, name="x", lb=0, ub=1)
    cap, p = lp.Parameter(name="cap"), lp.Parameter(name="p")
    caps = torch.tensor([1.5, 1.2, 1.8])
    ratio = (2 * x[0] + x[1]) / (x[0] + 1)
    prob = lp.Problem(lp.Maximize(ratio, estimate=1e5), [x.sum() <= cap])
    c = prob.compile().standard_form(caps.half())[2]
    assert torch.equal(c[0], torch.tensor([-2.0, -1.0, 0.0], dtype=torch.float16))
    (xs,) = lp.LPLayer(prob, parameters=[cap], variables=[x])(caps.half())
    assert torch.allclose(xs[:, 0].float(), caps - 1, atol=1e-3)
    prob = lp.Problem(lp.Maximize(ratio, estimate=p * p), [x.sum() <= cap])
    c = prob.compile().standard_form(caps, torch.full((3,), 1e20))[2]
    assert torch.equal(c[0], torch.tensor([-2.0, -1.0, 0.0]))


def test_an_estimate_must_be_a_scalar_of_parameters_on_a_ratio():
    x = lp.Variable(2, name="x", nonneg=True)
    k = lp.Parameter(2, name="k")
    ratio = (x[0] + 1) / (x[1] + 1)
    with pytest.raises(lp.DSLError, match=r"estimate= is for a ratio objective"):
        lp.Maximize(x.sum(), estimate=1.0)
    with pytest.raises(lp.DSLError, match=r"the estimate x\[0\] .*depends on variables"):
        lp.Maximize(ratio, estimate=x[0])
    with pytest.raises(lp.DSLError, match=r"has shape \(2,\); it must be a scalar"):
        lp.Minimize(ratio, estimate=k)
    assert lp.Minimize(ratio, estimate=k.sum()).estimate is not None
