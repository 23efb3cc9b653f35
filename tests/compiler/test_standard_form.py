"""Call-time properties of ``standard_form``: batching, dtype/device, layouts, gradients,
sparsity, ``recover``/``value`` and the call-time errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lpdsl as lp
from lpdsl.sparse import SparseMatrix


def model():
    """A small model touching products, division, matmul, atoms, bounds and equalities."""
    x = lp.Variable(3, name="x", lb=-2, ub=2)
    P = lp.Parameter((2, 3), name="P")
    q = lp.Parameter(3, name="q")
    s = lp.Parameter(name="s")
    cons = [
        P @ x <= (q[:2] * q[:2] + 1) * s,
        x / (q * q + 1) >= -1,
        lp.abs(x - q) <= 3,
        (s * x).sum() == s,
    ]
    prob = lp.Problem(lp.Minimize((q * s) @ x + lp.pos(x).sum()), cons)
    return prob, x


def data(rng, batch=(), dtype=torch.float64):
    def t(*shape):
        return torch.as_tensor(rng.normal(size=(*batch, *shape)), dtype=dtype)

    return [t(2, 3), t(3), t() + 3.0]


def test_batched_equals_per_item_and_unbatched_broadcasts(rng):
    prob, _ = model()
    compiled = prob.compile()
    P, q, s = data(rng, batch=(4,))
    A, b, c = compiled.standard_form(P, q, s)
    assert A.shape == (4, compiled.n_rows, compiled.n_cols)
    assert b.shape == (4, compiled.n_rows) and c.shape == (4, compiled.n_cols)
    for i in range(4):
        Ai, bi, ci = compiled.standard_form(P[i], q[i], s[i])
        torch.testing.assert_close(A[i], Ai)
        torch.testing.assert_close(b[i], bi)
        torch.testing.assert_close(c[i], ci)
    # an unbatched parameter broadcasts against batched ones; two batch dims work
    Pb = P.reshape(2, 2, 2, 3)
    A2, b2, _c2 = compiled.standard_form(Pb, q[0], s[0])
    assert A2.shape[:2] == (2, 2)
    A0, b0, _ = compiled.standard_form(P[3], q[0], s[0])
    torch.testing.assert_close(A2[1, 1], A0)
    torch.testing.assert_close(b2[1, 1], b0)


def test_dense_equals_sparse_and_pattern_covers_nonzeros(rng):
    prob, _ = model()
    compiled = prob.compile()
    vals = data(rng, batch=(3,))
    A, b, c = compiled.standard_form(*vals)
    As, bs, cs = compiled.standard_form(*vals, layout="sparse")
    assert isinstance(As, SparseMatrix) and As.pattern is compiled.pattern
    assert As.values.shape == (3, compiled.pattern.nnz)
    torch.testing.assert_close(As.to_dense(), A)
    torch.testing.assert_close(bs, b)
    torch.testing.assert_close(cs, c)
    # pattern: unique, row-major sorted
    key = compiled.pattern.rows * compiled.n_cols + compiled.pattern.cols
    assert torch.all(key[1:] > key[:-1])


def test_identity_structure_stays_sparse():
    n = 50
    x = lp.Variable(n, name="x", lb=0, ub=1)
    p = lp.Parameter(n, name="p")
    prob = lp.Problem(lp.Minimize(p @ x), [x <= p, 2 * x >= p - 1])
    compiled = prob.compile()
    # 2 constraint rows + 2 bound rows per entry, one nonzero each
    assert (compiled.n_rows, compiled.n_cols) == (4 * n, n)
    assert compiled.pattern.nnz == 4 * n
    assert "nnz 200" in repr(compiled) and "200 x 50" in repr(compiled)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_parts_no_parameter_enters_are_constants(layout):
    # the AUC model: A and c are constants, only b = margin - gap depends on the scores
    pos, neg = lp.Parameter(3, name="pos"), lp.Parameter(2, name="neg")
    z = lp.Variable((3, 2), name="z", nonneg=True)
    gap = pos.reshape((3, 1)) - neg.reshape((1, 2))
    compiled = lp.Problem(lp.Minimize(z.sum()), [z >= 0.1 - gap]).compile()
    values = [torch.randn(3, requires_grad=True), torch.randn(2, requires_grad=True)]
    A, b, c = compiled.standard_form(*values, layout=layout)
    a_values = A.values if layout == "sparse" else A
    assert b.requires_grad and not a_values.requires_grad and not c.requires_grad
    # a cost that depends on a parameter stays live
    p = lp.Parameter(6, name="p")
    compiled = lp.Problem(lp.Minimize(p @ z.reshape(6)), [z >= 0.1 - gap]).compile()
    _, b, c = compiled.standard_form(*values, torch.randn(6, requires_grad=True), layout=layout)
    assert b.requires_grad and c.requires_grad


def test_dtype_and_device_follow_the_parameters(rng):
    prob, _ = model()
    compiled = prob.compile()
    v64 = data(rng, batch=(2,))
    v32 = [v.float() for v in v64]
    A32, b32, c32 = compiled.standard_form(*v32)
    A64, b64, _c64 = compiled.standard_form(*v64)
    assert A32.dtype == b32.dtype == c32.dtype == torch.float32
    assert A64.dtype == torch.float64
    torch.testing.assert_close(A32.double(), A64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b32.double(), b64, rtol=1e-5, atol=1e-5)
    assert A32.device == v32[0].device
    if torch.cuda.is_available():
        vc = [v.cuda() for v in v32]
        Ac, bc, cc = compiled.standard_form(*vc, layout="sparse")
        assert Ac.device.type == bc.device.type == cc.device.type == "cuda"
        torch.testing.assert_close(Ac.to_dense().cpu(), A32)


def test_gradients_match_finite_differences(rng):
    prob, _ = model()
    compiled = prob.compile()
    vals = [v.requires_grad_() for v in data(rng, batch=(2,))]

    def dense(*v):
        return compiled.standard_form(*v)

    def sparse(*v):
        A, b, c = compiled.standard_form(*v, layout="sparse")
        return A.values, b, c

    assert torch.autograd.gradcheck(dense, vals)
    assert torch.autograd.gradcheck(sparse, vals)


def test_value_gradient_through_ratio(rng):
    n = 4
    phi = lp.Parameter(n, name="phi")
    y = lp.Parameter(n, name="y")
    z = lp.Variable(n, name="z", lb=0, ub=1)
    compiled = lp.Problem(lp.Maximize((2 * y) @ z / (z.sum() + y.sum())), [z >= phi]).compile()
    x = torch.rand(2, compiled.n_cols, dtype=torch.float64) + 0.5
    yv = torch.rand(2, n, dtype=torch.float64, requires_grad=True)
    phiv = torch.rand(n, dtype=torch.float64) - 1
    assert torch.autograd.gradcheck(lambda yy: compiled.value(x, phiv, yy), (yv,))
    assert compiled.value(x, phiv, yv).shape == (2,)


def test_recover_and_value_are_batched_and_shape_checked(rng, solve_lp):
    prob, x = model()
    compiled = prob.compile()
    vals = data(rng, batch=(2,))
    A, b, c = compiled.standard_form(*vals)
    xs = []
    for i in range(2):
        res = solve_lp(A[i], b[i], c[i])
        assert res.status == 0
        xs.append(torch.as_tensor(res.x))
    X = torch.stack(xs)
    rec = compiled.recover(X)
    assert list(rec) == [x] and rec[x].shape == (2, 3)
    lp_value = (c * X).sum(-1) + compiled.objective_offset(*vals)
    torch.testing.assert_close(compiled.value(X, *vals), lp_value)
    with pytest.raises(lp.DSLError, match=r"shape \(\*B, \d+\).*got shape \(2, 3\)"):
        compiled.recover(torch.zeros(2, 3))
    # batches that do not broadcast: a DSLError, not torch's size mismatch
    with pytest.raises(lp.DSLError, match=r"x has batch shape \(3,\) but the parameter values"):
        compiled.value(torch.cat([X, X[:1]]), *vals)


def test_maximise_negates_c_and_value_restores_the_sign():
    x = lp.Variable(2, name="x", lb=0, ub=1)
    p = lp.Parameter(2, name="p")
    compiled = lp.Problem(lp.Maximize(p @ x + 1)).compile()
    pv = torch.tensor([2.0, -1.0], dtype=torch.float64)
    _, _, c = compiled.standard_form(pv)
    torch.testing.assert_close(c, -pv)
    xv = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert float(compiled.value(xv, pv)) == pytest.approx(3.0)


def test_call_time_errors_name_the_culprit(rng):
    x = lp.Variable(3, name="x", lb=-1, ub=1)
    p = lp.Parameter(3, name="p")
    q = lp.Parameter(name="q")
    compiled = lp.Problem(lp.Minimize(p @ x), [x / (q - 1) <= 1]).compile()
    good = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(lp.DSLError, match=r"division by zero: the divisor .*q.*zero in 1 entry"):
        compiled.standard_form(good, torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(lp.DSLError, match="'p' is declared with shape"):
        compiled.standard_form(torch.zeros(4), torch.tensor(2.0))
    with pytest.raises(lp.DSLError, match="NaN"):
        compiled.standard_form(torch.full((3,), float("nan")), torch.tensor(2.0))
    # finite values whose products overflow: the coefficients would be NaN/Inf
    big = torch.tensor(1e200, dtype=torch.float64)
    overflow = lp.Problem(lp.Minimize(x.sum()), [q * q * x <= 1, x <= q * q - q * q]).compile()
    with pytest.raises(lp.DSLError, match="hold 6 NaN/Inf entries although every value"):
        overflow.standard_form(big)
    # which rows, in a model of constants alone (the message spoke of parameter values and
    # named nothing; numpy's overflow warnings came first: a reviewing helper's probe)
    y = lp.Variable(name="y", lb=0, ub=1)
    consts = lp.Problem(lp.Minimize(y), [y >= 0.5, (x * 1e200) * 1e200 <= 1, x.sum() <= 3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(
            lp.DSLError,
            match=r"model's constants hold 3 NaN/Inf entries .* in row 1 of A, row 2 of A, row 3",
        ):
            consts.compile().standard_form(dtype=torch.float64)
    with pytest.raises(lp.DSLError, match="layout must be one of"):
        compiled.standard_form(good, torch.tensor(2.0, dtype=torch.float64), layout="csr")
    with pytest.raises(lp.DSLError, match="no parameters"):
        lp.Problem(lp.Minimize(x.sum())).compile().standard_form(good)


def test_a_bound_beyond_float32s_range_is_named():
    # ub=1e39 with float32 values: the message blamed "a parameter that divides is 0"
    p = lp.Parameter(3, name="p")
    x = lp.Variable(3, name="x", lb=[-1e39, -2, -2], ub=1e39)
    prob = lp.Problem(lp.Minimize(p @ x), [x.sum() == 1, x <= 2, x >= -2])
    values = torch.tensor([1.0, -1.0, 0.5])
    with pytest.raises(
        lp.DSLError,
        match=r"^variable 'x' has lb = -1e\+39; variable 'x' has ub = 1e\+39: beyond "
        r"torch.float32's range \(largest finite 3.403e\+38\), so the coefficients hold inf. "
        r"Make the number smaller or pass float64 parameter values",
    ):
        prob.compile().standard_form(values)
    # a layer builds its LP in its float64 arithmetic and returns the float32 optimum, which
    # fits (it raised the error above while it built in the values' dtype)
    (xs,) = lp.LPLayer(prob)(values)
    assert xs.dtype == torch.float32 and xs.tolist() == pytest.approx([-2.0, 2.0, 1.0], abs=1e-6)
    # an optimum beyond float32's range is refused, not returned as inf
    far = lp.Problem(lp.Maximize(p[0] * x[0]), [x[0] <= 1e39 * p[1], x >= -2])
    with pytest.raises(
        lp.DSLError,
        match=r"optimal x reaches 1e\+39, beyond the range of "
        r"torch.float32 .* pass them as float64",
    ):
        lp.LPLayer(far)(values.abs())
    y = lp.Variable(3, name="y")
    constant = lp.Problem(lp.Minimize(p @ y), [y <= 1e39, y >= -1]).compile()
    with pytest.raises(lp.DSLError, match=r"^the constant 1e\+39: beyond torch.float32's range"):
        constant.standard_form(values)


def test_coefficients_that_the_dtype_rounds_to_zero_are_refused():
    """With float32 values 1e-50 x >= 1e-50 became 0 >= 0, and x = 0 came out "optimal";
    products of small constants (1e-25 (1e-25 x)) rounded to 0 on the way in float32. The
    coefficients are computed in float64 and a row of A (or c) that rounding empties is
    refused; a lost entry beside others, or a lost b_i or offset, is kept."""
    x, p = lp.Variable(name="x", nonneg=True), lp.Parameter(name="p")
    for row in (1e-50 * x >= 1e-50 * p, 1e-25 * (1e-25 * x) >= 1e-25 * (1e-25 * p)):
        layer = lp.LPLayer(lp.Problem(lp.Minimize(x), [row]))
        (xs,) = layer(torch.tensor(1.0, dtype=torch.float64))
        assert float(xs) == pytest.approx(1.0)
        (xs,) = layer(torch.tensor(1.0))  # built in the layer's float64: solved
        assert xs.dtype == torch.float32 and float(xs) == pytest.approx(1.0)
        with pytest.raises(
            lp.DSLError, match=r"^the coefficients of row 0 of A all round to 0 in torch.float32"
        ):
            layer.compiled.standard_form(torch.tensor(1.0))
    with pytest.raises(lp.DSLError, match=r"in torch.float16 .* pass float64 parameter values"):
        lp.Problem(lp.Minimize(p * x), [1e-8 * x >= 1e-8]).compile().standard_form(
            torch.tensor(1.0, dtype=torch.float16)
        )
    with pytest.raises(lp.DSLError, match=r"pass dtype=torch.float64"):
        lp.Problem(lp.Minimize(x), [1e-50 * x >= 1e-50]).compile().standard_form(
            dtype=torch.float32
        )
    batched = lp.Problem(lp.Minimize(x), [p * 1e-30 * x >= 1e-30]).compile()
    with pytest.raises(lp.DSLError, match=r"^the coefficients of row 0 of A \(batch item \(1,\)\)"):
        batched.standard_form(torch.tensor([1.0, 1e-20]))  # only item 1's row is emptied
    kept = lp.Problem(lp.Minimize(p * x + 1e-50), [x >= 1e-50, x + 1e-50 * x >= 1])
    A, b, c = kept.compile().standard_form(torch.tensor(1.0))
    assert A.dtype == torch.float32 and A[:, 0].abs().min() > 0


def test_dict_values_and_parameter_free_dtype():
    x = lp.Variable(2, name="x", lb=0)
    p = lp.Parameter(2, name="p")
    compiled = lp.Problem(lp.Minimize(p @ x)).compile()
    _, _, c = compiled.standard_form({p: np.array([1.0, 2.0])})
    assert c.tolist() == [1.0, 2.0]
    free = lp.Problem(lp.Minimize(x.sum())).compile()
    A, _b, c = free.standard_form(dtype=torch.float32)
    assert A.dtype == torch.float32 and A.shape == (2, 2)
    # int64 truncated the coefficients (0.5 x >= 1.5 became 0 >= 1: INFEASIBLE)
    for bad in (torch.int64, torch.bool, "float32"):
        with pytest.raises(lp.DSLError, match=r"dtype must be a floating torch\.dtype"):
            free.standard_form(dtype=bad)


def test_dtype_and_device_are_honoured_or_refused():
    """With parameters, ``dtype``/``device`` were ignored, even ``device="banana"`` (a
    reviewing helper): the values are now converted, differentiably, and a device that is
    not one, or not here, gets a DSLError."""
    x = lp.Variable(2, name="x", lb=0)
    p = lp.Parameter(2, name="p")
    compiled = lp.Problem(lp.Minimize(p @ x), [x.sum() >= 1]).compile()
    free = lp.Problem(lp.Minimize(x.sum()), [x.sum() >= 1]).compile()
    v = torch.tensor([1.0, 2.0], requires_grad=True)
    A, b, c = compiled.standard_form(v, dtype=torch.float64, device="cpu")
    assert A.dtype == b.dtype == c.dtype == torch.float64
    c.sum().backward()
    assert v.grad.tolist() == [1.0, 1.0]
    for bad in (torch.int64, torch.float8_e4m3fn):  # (float8: a raw NotImplementedError)
        with pytest.raises(lp.DSLError, match=r"dtype must be a floating"):
            compiled.standard_form(v, dtype=bad)
    # a dtype narrower than the values is what to change, not the values (a verifying helper)
    big = torch.tensor([1e5, 1.0], dtype=torch.float64)
    with pytest.raises(lp.DSLError, match=r"beyond dtype=torch.float16's range.*leave dtype out"):
        compiled.standard_form(big, dtype=torch.float16)
    bounded = lp.Problem(lp.Minimize(p @ x), [x <= 1e5]).compile()  # blamed on the values
    with pytest.raises(lp.DSLError, match=r"the constant 100000: beyond.*pass a wider dtype"):
        bounded.standard_form(torch.ones(2, dtype=torch.float64), dtype=torch.float16)
    scaled = lp.Problem(lp.Minimize(x.sum()), [(p * 1e-50) @ x >= 1e-50]).compile()
    with pytest.raises(lp.DSLError, match=r"round to 0 in torch.float32.*leave dtype out"):
        scaled.standard_form(torch.ones(2, dtype=torch.float64), dtype=torch.float32)
    missing = [] if torch.cuda.is_available() else ["cuda"]
    missing += [] if hasattr(torch, "hpu") else ["hpu"]  # (a raw ModuleNotFoundError)
    for dev, msg in [("banana", "must be a torch.device"), ("meta", "holds no values")] + [
        (d, "is not available here") for d in missing
    ]:
        for problem, values in ((compiled, (v,)), (free, ())):
            with pytest.raises(lp.DSLError, match=msg):
                problem.standard_form(*values, device=dev)


def test_deep_trees_compile_without_recursion_errors():
    x = lp.Variable(2000, name="x", lb=0, ub=1)
    total = x[0]
    for i in range(1, 2000):
        total = total + x[i]
    compiled = lp.Problem(lp.Maximize(total), [total <= 3]).compile()
    A, _b, c = compiled.standard_form()
    assert A.shape == (4001, 2000) and float(c.sum()) == -2000.0


def test_value_mixes_float32_data_with_float64_solution():
    """``value`` promotes: float32 parameters with a float64 ``x`` (as the oracle passes)."""
    p = lp.Parameter(2, name="p")
    x = lp.Variable(2, name="x", lb=0, ub=1)
    compiled = lp.Problem(lp.Maximize(p @ x)).compile()
    v = compiled.value(torch.ones(2, dtype=torch.float64), torch.tensor([1.0, 2.0]))
    assert v.dtype == torch.float64 and float(v) == 3.0
    # ... and the other way round: float64 values are not rounded to x's dtype (once
    # standard_form honoured dtype=, a float16 x overflowed them, and a bfloat16 x gave
    # 249856 for 250000: a verifying helper)
    big = torch.tensor([1e5, 2e5], dtype=torch.float64)
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        v = compiled.value(torch.full((2,), 0.5, dtype=dt), big)
        assert v.dtype == torch.float64 and float(v) == 150000.0


def test_value_needs_parameter_values_only_when_the_objective_reads_them():
    """SPEC §2: ``value`` takes the values "only when the objective depends on them"."""
    s = lp.Parameter(3, name="s")
    w = lp.Variable(3, name="w", lb=0, ub=1)
    compiled = lp.Problem(lp.Maximize(w.sum()), [s @ w <= 1]).compile()
    x = torch.tensor([0.5, 0.25, 0.0], dtype=torch.float64)
    assert float(compiled.value(x)) == 0.75  # raised "missing values for: s (3,)"
    assert float(compiled.value(x, torch.ones(3))) == 0.75  # values may still be given
    reads = lp.Problem(lp.Maximize(s @ w)).compile()
    with pytest.raises(lp.DSLError, match="s"):
        reads.value(x)
    # integer points (a list of ints) are promoted, with or without parameters
    free = lp.Problem(lp.Minimize(w.sum())).compile()
    assert float(free.value([1, 0, 1])) == 2.0  # raised "standard_form: dtype must be ..."
    assert float(reads.value([1, 0, 1], torch.tensor([1.0, 2.0, 3.0]))) == 4.0


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_coefficients_that_cancel_to_a_rounding_residue_are_zero(layout):
    """``0.1 x + 0.2 x == 0.3 x`` holds for every ``x``, but its coefficient summed to 5.6e-17,
    which the solver's unit row scaling read as ``x == 0``: ``max x`` over ``[0, 1]`` answered
    1e-28, OPTIMAL (a reviewing helper). Likewise a sum of parameter terms (``tot @ y == a @ y
    + b @ y`` with ``tot = a + b``: 1.0 for 2.0) and a cost that cancels (UNBOUNDED for 0). A
    coefficient above its terms' rounding (``(1 + 1e-9) z - z``) keeps its value."""

    def standard(problem, *values):
        A, b, c = problem.compile().standard_form(*values, layout=layout, dtype=torch.float64)
        return (A.to_dense() if isinstance(A, SparseMatrix) else A), b, c

    x = lp.Variable(name="x", lb=0.0, ub=1.0)

    def empty_rows(A):
        return int((A == 0.0).all(-1).sum())

    for con, rows in ((0.1 * x + 0.2 * x == 0.3 * x, 2), (0.1 * x + 0.2 * x <= 0.3 * x, 1)):
        problem = lp.Problem(lp.Maximize(x), [con])
        A, _, _ = standard(problem)
        assert empty_rows(A) == rows
        (value,) = lp.LPLayer(problem)()
        assert float(value) == 1.0
    y = lp.Variable(3, name="y", lb=0.0, ub=1.0)
    a, b, tot = (lp.Parameter(3, name=name) for name in ("a", "b", "tot"))
    problem = lp.Problem(lp.Maximize(y[0] - y[1] + y[2]), [tot @ y == a @ y + b @ y])
    for dtype in (torch.float64, torch.float32):
        av = torch.tensor([0.1, 0.7, 1 / 3], dtype=dtype, requires_grad=True)
        bv = torch.tensor([0.2, 0.1, 1 / 7], dtype=dtype)
        A, _, _ = standard(problem, av, bv, av + bv)
        assert empty_rows(A) == 2
        (ys,) = lp.LPLayer(problem, variables=[y])(av, bv, av + bv)
        torch.testing.assert_close(ys, torch.tensor([1.0, 0.0, 1.0], dtype=dtype))
    z = lp.Variable(name="z")
    A, b, c = standard(lp.Problem(lp.Minimize(0.3 * z - 0.1 * z - 0.2 * z), [z >= -5]))
    assert (c == 0.0).all()
    assert lp.solve(A, b, c).status == lp.Status.OPTIMAL
    A, _, _ = standard(lp.Problem(lp.Minimize(z), [(1 + 1e-9) * z - z >= -5]))
    assert float(A[0, 0]) == pytest.approx(-1e-9, rel=1e-6)
    p = lp.Parameter(name="p")
    A, _, _ = standard(
        lp.Problem(lp.Minimize(z), [p * z - z >= -5]), torch.tensor(1 + 1e-9, dtype=torch.float64)
    )
    assert float(A[0, 0]) == pytest.approx(-1e-9, rel=1e-6)


def test_cancelling_sums_keep_their_derivative_their_accuracy_and_their_infinities():
    """A reviewing helper's findings on the first version of the rule above: (1) a zeroed
    coefficient lost its derivative, so ``max x + 2y s.t. (w * x).sum() + y <= 1`` at
    zero-initialised ``w`` got ``d obj / dw = 0`` for -2; (2) summed in float32 with an
    allowance of ``(k - 1)`` float32 ulps (a worst case growing like ``k^2``), accurate sums
    of many terms were zeroed (the cost of ``min (P @ x).sum()``, P 40,000 x 3); (3) an
    infinite coefficient passed the test and became 0 instead of an error."""
    x = lp.Variable(name="x", lb=0.0, ub=1.0)  # one coefficient, three weights' terms
    y = lp.Variable(name="y", lb=0.0)
    w = lp.Parameter(3, name="w")
    layer = lp.LPLayer(lp.Problem(lp.Maximize(x + 2 * y), [(w * x).sum() + y <= 1]))
    wv = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    xs, ys = layer(wv)
    (grad,) = torch.autograd.grad(xs + 2 * ys, wv)
    torch.testing.assert_close(grad, torch.full((3,), -2.0, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    P = lp.Parameter((40_000, 3), name="P")
    z = lp.Variable(3, name="z", lb=-1.0, ub=1.0)
    Pv = torch.randn(40_000, 3, generator=g)
    _, _, c = lp.Problem(lp.Minimize((P @ z).sum()), []).compile().standard_form(Pv)
    exact = Pv.double().sum(0)
    torch.testing.assert_close(c.double(), exact, rtol=1e-6, atol=0.0)
    q = lp.Parameter(name="q")
    v = lp.Variable(name="v", lb=0.0, ub=1.0)
    with pytest.raises(lp.DSLError, match="NaN/Inf"):
        lp.Problem(lp.Maximize(v), [(q * q) * v + q * v <= 0.5]).compile().standard_form(
            torch.tensor(1e200, dtype=torch.float64)
        )


def test_value_and_recover_refuse_unreadable_complex_x_and_a_bad_precision() -> None:
    # value() of a meta x read uninitialised memory (4.7e27, then 1e-38: a wrong answer, no
    # error); a complex x lost its imaginary part with torch's warning only; precision="float64"
    # raised promote_types' TypeError (a reviewing helper's probe)
    s, x = lp.Parameter(3, name="s"), lp.Variable(3, name="x", lb=-1, ub=1)
    compiled = lp.Problem(lp.Maximize(s @ x), [x.sum() <= 1]).compile()
    sv = torch.tensor([1.0, -2.0, 0.5])
    with pytest.raises(lp.DSLError, match=r"x is a meta tensor"):
        compiled.value(torch.zeros(compiled.n_cols, device="meta"), sv)
    with pytest.raises(lp.DSLError, match=r"Expected `x` to be real but got dtype"):
        compiled.recover(torch.ones(compiled.n_cols, dtype=torch.complex64))
    with pytest.raises(lp.DSLError, match=r"precision must be a floating torch dtype"):
        compiled.recover(torch.zeros(compiled.n_cols), precision="float64")
    with pytest.raises(lp.DSLError, match=r"`x` to be a tensor or array of numbers but got str"):
        compiled.value("abc", sv)


@pytest.mark.parametrize("T", [7, 40])
def test_nested_parameter_products_stay_one_term_per_coefficient(T):
    # A @ (A @ x) repeated every term of A @ x once per inner entry of A: the condensed
    # dynamics s = A @ s + B @ u[t] had 4^(T-1) terms per coefficient (T = 9: 1.4 GB and 1 s to
    # compile, 200 ms a call), and a discount chain e = q * e + x[i] factor tuples as long as
    # the chain (a reviewing helper's probes, eighteenth pass). Same LP as with state variables
    # (at T = 40 too, where a rounding bound that multiplied along the chain zeroed every
    # coefficient of the early controls).
    nx = 4
    A, B = lp.Parameter((nx, nx), name="A"), lp.Parameter((nx, 2), name="B")
    u = lp.Variable((T, 2), name="u", lb=-1, ub=1)
    S = lp.Variable((T, nx), name="S", lb=-5, ub=5)
    s, cost, cons, states = np.zeros(nx), 0, [], []
    for t in range(T):
        s = A @ s + B @ u[t]
        cons += [s <= 5, s >= -5]
        cost = cost + s.sum()
        states.append(S[t] == A @ (S[t - 1] if t else np.zeros(nx)) + B @ u[t])
    condensed = lp.Problem(lp.Minimize(cost), cons).compile()
    terms = sum(group.scale.size for group in condensed._map.groups)
    assert terms <= 4 * condensed.pattern.nnz
    g = torch.Generator().manual_seed(0)
    values = [
        (0.5 * torch.eye(nx, dtype=torch.float64) + 0.1 * torch.randn(nx, nx, generator=g)),
        torch.randn(nx, 2, generator=g, dtype=torch.float64),
    ]
    results = []
    for compiled in (condensed, lp.Problem(lp.Minimize(S.sum()), states).compile()):
        leaves = [v.clone().requires_grad_() for v in values]
        sol = lp.solve(*compiled.standard_form(*leaves))
        assert int(sol.status) == lp.Status.OPTIMAL
        sol.value.backward()
        results.append((sol.value.detach(), *(leaf.grad for leaf in leaves)))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)
    x, q = lp.Variable(60, name="x", lb=0, ub=1), lp.Parameter(name="q")
    e = x[0]
    for i in range(1, 60):
        e = q * e + x[i]
    chain = lp.Problem(lp.Maximize(e), [x.sum() <= 30]).compile()
    assert max(len(group.nodes) for group in chain._map.groups) <= 3
    c = chain.standard_form(torch.tensor(0.9, dtype=torch.float64))[2]
    torch.testing.assert_close(c[:60], -(0.9 ** torch.arange(59, -1, -1, dtype=torch.float64)))


@pytest.mark.parametrize("T", [7, 40])
def test_nested_constant_products_stay_one_term_per_coefficient(T):
    # the same condensed dynamics with numpy A and B: constant terms repeated as the
    # parameters' had (T = 11: 11 s to compile, 2.9 GB, 290 ms a call), and a moving average
    # applied 17 times likewise (3.3 s, 1.4 GB: a reviewing helper's probes, nineteenth pass)
    nx = 4
    rng = np.random.default_rng(0)
    A = 0.5 * np.eye(nx) + 0.1 * rng.normal(size=(nx, nx))
    B = rng.normal(size=(nx, 2))
    q = lp.Parameter(nx, name="q")
    u = lp.Variable((T, 2), name="u", lb=-1, ub=1)
    S = lp.Variable((T, nx), name="S", lb=-5, ub=5)
    s, cons, states = np.zeros(nx), [], []
    for t in range(T):
        s = A @ s + B @ u[t]
        cons += [s <= 5, s >= -5]
        states.append(S[t] == A @ (S[t - 1] if t else np.zeros(nx)) + B @ u[t])
    condensed = lp.Problem(lp.Minimize(q @ s + u.sum()), cons).compile()
    terms = sum(group.scale.size for group in condensed._map.groups)
    terms += condensed._map._const["sparse"][0].size
    assert terms <= 4 * condensed.pattern.nnz
    states_lp = lp.Problem(lp.Minimize(q @ S[T - 1] + u.sum()), states).compile()
    qv = torch.tensor([1.0, -0.5, 0.25, 2.0], dtype=torch.float64)
    results = []
    for compiled in (condensed, states_lp):
        leaf = qv.clone().requires_grad_()
        sol = lp.solve(*compiled.standard_form(leaf))
        assert int(sol.status) == lp.Status.OPTIMAL
        sol.value.backward()
        results.append((sol.value.detach(), leaf.grad))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-9)
    x = lp.Variable(40, name="x", lb=0, ub=1)
    c = lp.Parameter(40, name="c")
    smooth = x
    for _ in range(17):
        smooth = 0.5 * (smooth[:-1] + smooth[1:])
    model = lp.Problem(lp.Maximize(c @ x), [smooth <= 0.5]).compile()
    assert sum(group.scale.size for group in model._map.groups) <= 8 * model.pattern.nnz
    A_s = model.standard_form(torch.ones(40, dtype=torch.float64))[0].to_dense()
    from math import comb

    # row i of the 17-fold average: binomial weights C(17, k) / 2^17 on x[i..i+17]
    want = torch.tensor([comb(17, k) / 2**17 for k in range(18)], dtype=torch.float64)
    torch.testing.assert_close(A_s[0, :18], want, rtol=0, atol=1e-15)


def test_collapsed_sums_that_cancel_are_zero():
    # A @ (B @ x) - (A @ B) @ x is 0: collapsed into one term per coefficient, its rounding
    # residue (1.4e-15) escaped the test of sums that cancel, and the solver's row scaling made
    # it a cut, -15.3 for -20 (a verifying helper's probe, eighteenth pass)
    k = 20
    A, B = lp.Parameter((k, k), name="A"), lp.Parameter((k, k), name="B")
    x = lp.Variable(k, name="x", lb=-1, ub=1)
    g = torch.Generator().manual_seed(k)
    values = [torch.randn(k, k, generator=g, dtype=torch.float64) for _ in range(2)]
    for rhs in (0.0, 1e-9):
        problem = lp.Problem(lp.Minimize(x.sum()), [A @ (B @ x) - (A @ B) @ x <= rhs])
        compiled = problem.compile()
        for layout in ("dense", "sparse"):
            A_, b_, c_ = compiled.standard_form(*values, layout=layout)
            dense = A_.to_dense() if isinstance(A_, SparseMatrix) else A_
            assert float(dense[:k].abs().max()) == 0.0
            sol = lp.solve(A_, b_, c_)
            assert int(sol.status) == lp.Status.OPTIMAL and float(sol.value) == pytest.approx(-20.0)


@pytest.mark.parametrize(("T", "dtype"), [(120, torch.float64), (60, torch.float32)])
def test_collapsed_chains_keep_their_coefficients(T, dtype):
    # A rotation's condensed dynamics: the coefficient of u[k] in s_T is (A^(T-1-k) B)_0,
    # of size ~1, while its expanded terms' magnitude grows like sqrt(2)^k; the test of sums
    # that cancel, against that magnitude, zeroed 22 of 120 coefficients (optimum 54.8 for
    # 72.4; float32 from T = 50: a verifying helper's probe, eighteenth pass)
    A, B = lp.Parameter((2, 2), name="A"), lp.Parameter((2, 1), name="B")
    u = lp.Variable((T, 1), name="u", lb=-1, ub=1)
    s = np.zeros(2)
    for t in range(T):
        s = A @ s + B @ u[t]
    th = np.pi / 4
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    want, P = np.zeros(T), np.array([[0.0], [1.0]])
    for k in range(T - 1, -1, -1):
        want[k], P = P[0, 0], rot @ P
    values = (torch.tensor(rot, dtype=dtype), torch.tensor([[0.0], [1.0]], dtype=dtype))
    c = lp.Problem(lp.Maximize(s[0]), []).compile().standard_form(*values)[2]
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(-c[:T].double().numpy(), want, atol=tol)


def test_float32_data_cancelling_inside_a_collapsed_sum():
    # C = P @ Q rounded to float32 by the user: R @ (P @ (Q @ x) - C @ x) is 0, but the
    # collapsed sum allowed only float64's rounding, and its residues of 7.5e-7 cut the
    # optimum from 6 to 0 (a verifying helper's probe)
    k = 6
    P, Q, C, R = (lp.Parameter((k, k), name=n) for n in "PQCR")
    x = lp.Variable(k, name="x", lb=-1, ub=1)
    g = torch.Generator().manual_seed(1)
    Pv, Qv, Rv = (torch.randn(k, k, generator=g) for _ in range(3))
    for expr in (P @ (Q @ x) - C @ x, R @ (P @ (Q @ x) - C @ x)):
        problem = lp.Problem(lp.Maximize(x.sum()), [expr <= 0, expr >= 0])
        values = {"P": Pv, "Q": Qv, "C": Pv @ Qv, "R": Rv}
        compiled = problem.compile()
        A_, b_, c_ = compiled.standard_form(*[values[p.name] for p in compiled.parameters])
        assert float(A_[: 2 * k].abs().max()) == 0.0
        assert float(lp.solve(A_, b_, c_).value) == pytest.approx(-6.0)


def test_an_overflowing_objective_in_value_is_named_not_a_raw_error():
    # value() split its objective-only map as the standard form's to name the places, and
    # raised a raw RuntimeError (shape '[5, 2]' is invalid) where standard_form said why
    x = lp.Variable(2, name="x", lb=-1, ub=1)
    p, s = lp.Parameter(2, name="p"), lp.Parameter(name="s")
    compiled = lp.Problem(lp.Minimize(p @ x * s), [x.sum() <= s]).compile()
    values = (
        torch.tensor([1e200, 1.0], dtype=torch.float64),
        torch.tensor(1e200, dtype=torch.float64),
    )
    with pytest.raises(lp.DSLError, match=r"NaN/Inf entries .* in the objective"):
        compiled.value(torch.zeros(2, dtype=torch.float64), *values)


def test_collapsed_constant_sums_are_constants_in_float64():
    # a collapsed sum of constant terms was evaluated at each call in the parameter values'
    # dtype: with float32 values A @ (A @ x) - M @ x lost its real 1e-7 difference (the LP came
    # out UNBOUNDED), coefficients of 1e-48 vanished without the underflow error, and
    # A @ (B @ x) with 150 x 150 numpy matrices cost 15 ms a call (a verifying helper)
    A = np.array([[0.3, 0.7, 0.1], [0.2, 0.9, 0.4], [0.6, 0.1, 0.8]])
    d = 1e-7
    M = (A @ A) * (1 - d)  # A @ (A @ x) - M @ x has the coefficients d A @ A
    x = lp.Variable(3, name="x", lb=0)
    c = lp.Parameter(3, name="c")
    compiled = lp.Problem(lp.Maximize(c @ x), [A @ (A @ x) - M @ x <= 1]).compile()
    for dt in (torch.float64, torch.float32):
        A_s, b, cc = compiled.standard_form(torch.tensor([1.0, 2.0, 1.5], dtype=dt))
        got = A_s[:3].double().numpy()
        np.testing.assert_allclose(got, d * A @ A, rtol=1e-7 if dt == torch.float32 else 1e-8)
        assert int(lp.solve(A_s, b, cc).status) == lp.Status.OPTIMAL
    # ... at any depth: A @ (A @ (A @ x)) nested one constant sum in another, still summed at
    # each call in the values' dtype (its 1e-7 difference, or a + 1e-8 x beside it, lost in
    # float32: UNBOUNDED; a verifying helper)
    deep = lp.Problem(
        lp.Maximize(c @ x), [A @ (A @ (A @ x)) - (A @ A @ A) * (1 - d) @ x + 1e-8 * x <= 1]
    ).compile()
    sums = [node for grp in deep._map.groups for node in grp.nodes if node.op == "segment_sum"]
    assert all(node.has_parameters for node in sums)
    want = d * A @ A @ A + 1e-8 * np.eye(3)
    for dt in (torch.float64, torch.float32):
        A_s, b, cc = deep.standard_form(torch.tensor([1.0, 2.0, 1.5], dtype=dt))
        np.testing.assert_allclose(A_s[:3].double().numpy(), want, rtol=1e-6)
        assert int(lp.solve(A_s, b, cc).status) == lp.Status.OPTIMAL
    tiny = A * 1e-16
    p = lp.Parameter(3, name="p")
    under = lp.Problem(lp.Maximize(p @ x), [tiny @ (tiny @ (tiny @ x)) <= 1]).compile()
    with pytest.raises(lp.DSLError, match=r"all round to 0 in torch\.float32"):
        under.standard_form(torch.ones(3))


def test_a_cancelled_inner_sum_passes_its_magnitude_on_and_deep_chains_compile():
    # C @ (A @ (B @ x)) - (C @ A @ B) @ x with A @ B = 0: the inner sum cancelled to 0 and,
    # its magnitude capped at count * |value| = 0, the outer sum kept a residue of 1e-16 that
    # the solver read as x >= 0 (value 0 for -40); through a parameter P = B likewise. And
    # s = A @ s repeated 2,000 times recursed too deep folding its constant sums (a
    # verifying helper's probes)
    A = np.ones((3, 3))
    B = np.array([[0.1, 0.2], [0.2, 0.3], [-0.3, -0.5]])
    C = np.array([[0.3, 0.7, 0.1], [0.2, 0.9, 0.4]])
    x = lp.Variable(2, name="x", lb=-20, ub=20)
    P = lp.Parameter((3, 2), name="P")
    for inner, values in ((B, ()), (P, (torch.tensor(B),))):
        row = C @ (A @ (inner @ x)) - (C @ A @ B) @ x
        compiled = lp.Problem(lp.Minimize(x.sum()), [row <= 0]).compile()
        A_s, b, c = compiled.standard_form(*values, dtype=torch.float64)
        dense = A_s.to_dense() if isinstance(A_s, lp.SparseMatrix) else A_s
        assert torch.equal(dense[:2], torch.zeros(2, 2, dtype=torch.float64))
        assert float(lp.solve(A_s, b, c).value) == pytest.approx(-40.0)
    # ... and where the inner sum cancels only nearly (A @ B ~ 3e-6): capped at count * |value|
    # it passed ~1e-5 of its rounding on, and a residue of 4e-18 (float32 values: 3e-8) cut
    # the LP, -20 or -15.9 for -40 (the next verifying helper)
    B_near = B + np.array([[0.0, 0.0], [0.0, 0.0], [1e-6, 1e-6]])
    D = (C @ A) @ B_near
    for inner, values in (
        (B_near, ()),
        (P, (torch.tensor(B_near),)),
        (P, (torch.tensor(B_near).float(),)),
    ):
        row = D @ x - C @ (A @ (inner @ x))
        compiled = lp.Problem(lp.Minimize(x.sum()), [row <= 0]).compile()
        A_s, b, c = compiled.standard_form(*values, dtype=torch.float64)
        assert float(lp.solve(A_s, b, c).value) == pytest.approx(-40.0)
    theta = 0.3
    R = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    y = lp.Variable(2, name="y", lb=-1, ub=1)
    s = y
    for _ in range(2000):
        s = R @ s
    chain = lp.Problem(lp.Maximize(y.sum()), [s <= 0.5]).compile()
    A_c = chain.standard_form(dtype=torch.float64)[0]
    A_c = A_c.to_dense() if isinstance(A_c, lp.SparseMatrix) else A_c
    np.testing.assert_allclose(A_c[:2].numpy(), np.linalg.matrix_power(R, 2000), atol=1e-12)


def test_a_sum_of_terms_scaled_by_an_expression_of_constants_compiles():
    # c * 0.5 is a parameter-free node, not a constant: its terms' sum, folded as a constant,
    # raised a bare KeyError('folded') (a fuzzing helper, twentieth pass)
    x = lp.Variable(2, name="x", lb=-1, ub=1)
    c = lp.Constant(np.array([0.3, 2.0]))
    cases = [
        (c * 0.5 * (x + x + x), [0.45, 3.0]),
        (0.5 * c * (x + 0.5 * x - x), [0.075, 0.5]),
        (c * 0.5 * (x + x + x) - 1.5 * c * x, [0.0, 0.0]),  # cancels to 0 exactly
    ]
    for expr, want in cases:
        prob = lp.Problem(lp.Minimize(expr.sum()))
        _, _, cost = prob.compile().standard_form(dtype=torch.float64)
        np.testing.assert_allclose(cost.numpy(), want, rtol=1e-15, atol=0)
        assert lp.check(prob).ok
