"""Shapes and values of every operation agree with numpy on ``np.arange`` data.

Each test builds an expression from variables, evaluates the tree with a small numpy
interpreter written here (independent of the compiler), and compares shape and values with
the same numpy expression applied to the data directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lpdsl as lp
from lpdsl.expressions import walk


def evaluate(expr: lp.Expression, env: dict[Any, np.ndarray]) -> np.ndarray:
    """Evaluate the tree with numpy, reading only the documented node fields."""
    out: dict[int, np.ndarray] = {}
    for node in walk([expr]):
        a = [out[id(x)] for x in node.args]
        op = node.op
        if op in ("variable", "parameter"):
            val = env[node]
        elif op == "constant":
            val = node.attrs["value"]
        elif op == "add":
            val = a[0] + a[1]
        elif op == "neg":
            val = -a[0]
        elif op == "mul":
            val = a[0] * a[1]
        elif op == "div":
            val = a[0] / a[1]
        elif op == "matmul":
            val = a[0] @ a[1]
        elif op == "sum":
            val = a[0].sum(axis=node.attrs["axis"])
        elif op == "transpose":
            val = a[0].T
        elif op == "reshape":
            val = a[0].reshape(node.attrs["shape"])
        elif op == "index":
            val = a[0].reshape(-1)[node.attrs["flat"]]
        elif op == "concatenate":
            val = np.concatenate(a, axis=node.attrs["axis"])
        elif op == "abs":
            val = np.abs(a[0])
        elif op == "pos":
            val = np.maximum(a[0], 0)
        elif op == "maximum":
            val = np.maximum.reduce(np.broadcast_arrays(*a))
        elif op == "minimum":
            val = np.minimum.reduce(np.broadcast_arrays(*a))
        elif op == "max":
            val = a[0].max(axis=node.attrs["axis"])
        elif op == "min":
            val = a[0].min(axis=node.attrs["axis"])
        elif op == "sum_largest":
            val = np.sort(a[0].reshape(-1))[::-1][: node.attrs["k"]].sum()
        elif op == "norm1":
            val = np.abs(a[0]).sum()
        else:
            raise AssertionError(f"unknown op {op}")
        val = np.asarray(val, dtype=np.float64)
        assert val.shape == node.shape, (op, val.shape, node.shape)
        out[id(node)] = val
    return out[id(expr)]


def leaf(shape: tuple[int, ...], start: float = 0.0) -> tuple[lp.Variable, np.ndarray]:
    x = lp.Variable(shape)
    size = int(np.prod(shape, dtype=np.int64))
    return x, (np.arange(size, dtype=np.float64) + start).reshape(shape) - size / 3


def check(expr: lp.Expression, env: dict[Any, np.ndarray], expected: Any) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    assert expr.shape == expected.shape
    np.testing.assert_allclose(evaluate(expr, env), expected)


BROADCAST_PAIRS = [
    ((), ()),
    ((3,), ()),
    ((), (3,)),
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (2, 3)),
    ((2, 1), (1, 3)),
    ((2, 3), (2, 1)),
    ((4, 1, 3), (2, 1)),
]


@pytest.mark.parametrize(("sa", "sb"), BROADCAST_PAIRS)
def test_binary_broadcasting_matches_numpy(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    x, xv = leaf(sa)
    b = np.arange(int(np.prod(sb)), dtype=np.float64).reshape(sb) + 1.0
    env = {x: xv}
    check(x + b, env, xv + b)
    check(b + x, env, b + xv)
    check(x - b, env, xv - b)
    check(b - x, env, b - xv)
    check(x * b, env, xv * b)
    check(b * x, env, b * xv)
    check(x / b, env, xv / b)
    check(-x, env, -xv)
    p = lp.Parameter(sb)
    env[p] = b
    check(x * p + p, env, xv * b + b)
    check(x / p - p * p, env, xv / b - b * b)


@pytest.mark.parametrize(
    ("sa", "sb"), [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4))]
)
def test_matmul_matches_numpy(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    x, xv = leaf(sa)
    c = np.arange(int(np.prod(sb)), dtype=np.float64).reshape(sb) - 2
    check(x @ c, {x: xv}, xv @ c)
    y, yv = leaf(sb)
    a = np.arange(int(np.prod(sa)), dtype=np.float64).reshape(sa) + 1
    check(a @ y, {y: yv}, a @ yv)
    check(torch.as_tensor(a) @ y, {y: yv}, a @ yv)


@pytest.mark.parametrize("shape", [(), (4,), (2, 3), (2, 3, 4)])
def test_sum_transpose_reshape(shape: tuple[int, ...]) -> None:
    x, xv = leaf(shape)
    env = {x: xv}
    check(x.sum(), env, xv.sum())
    check(np.sum(x), env, xv.sum())  # numpy passes out=None (a TypeError)
    for axis in range(-len(shape), len(shape)):
        check(x.sum(axis), env, xv.sum(axis))
        check(x.sum(axis=axis), env, xv.sum(axis=axis))
        check(np.sum(x, axis=axis), env, xv.sum(axis=axis))
    t = x.T
    check(t, env, xv.T)
    check(x.reshape(-1), env, xv.reshape(-1))
    check(x.flatten(), env, xv.reshape(-1))
    if xv.size % 2 == 0 and xv.size:
        check(x.reshape(2, -1), env, xv.reshape(2, -1))
        check(x.reshape((-1, 2)), env, xv.reshape((-1, 2)))
    assert x.size == xv.size
    assert x.ndim == xv.ndim
    if shape:
        assert len(x) == shape[0]
        assert [e.shape for e in x] == [r.shape for r in xv]


def test_transpose_of_vector_is_identity_and_matrix_reverses() -> None:
    v = lp.Variable(3)
    assert v.T is v
    m = lp.Variable((2, 5))
    assert m.T.shape == (5, 2)
    assert m.T.op == "transpose"


KEYS_1D = [
    0,
    -1,
    3,
    slice(None),
    slice(1, 4),
    slice(None, None, 2),
    slice(None, None, -1),
    slice(5, 1, -2),
    [0, 2, 2],
    np.array([4, -1]),
    np.array([True, False, True, False, True, False]),
    Ellipsis,
    (slice(None), None),
    [],  # an empty selection, as numpy's (np.asarray([]) is float64, refused as an index)
    [[]],
]

KEYS_2D = [
    0,
    -1,
    (1, 2),
    (-1, -2),
    (slice(None), 1),
    (1, slice(None)),
    (slice(None), [0, 3]),
    ([0, 2], [1, 3]),
    (slice(None, None, -1), slice(1, None, 2)),
    np.arange(12).reshape(3, 4) % 3 == 0,
    (np.array([True, False, True]), slice(None)),
    (Ellipsis, 2),
    (None, 0),
    (np.array([[0, 1], [2, 0]]),),
    (torch.tensor([0, 2]),),
    [],
    (slice(None), []),
    ([], 1),
]


@pytest.mark.parametrize("key", KEYS_1D, ids=repr)
def test_index_1d_matches_numpy(key: Any) -> None:
    x, xv = leaf((6,))
    e = x[key]
    expected_flat = np.arange(6).reshape(6)[key]
    np.testing.assert_array_equal(e.attrs["flat"], expected_flat)
    assert e.attrs["flat"].dtype == np.int64
    check(e, {x: xv}, xv[key])


@pytest.mark.parametrize("key", KEYS_2D, ids=repr)
def test_index_2d_matches_numpy(key: Any) -> None:
    x, xv = leaf((3, 4))
    np_key = (
        tuple(k.numpy() if isinstance(k, torch.Tensor) else k for k in key)
        if isinstance(key, tuple)
        else key
    )
    e = x[key]
    np.testing.assert_array_equal(e.attrs["flat"], np.arange(12).reshape(3, 4)[np_key])
    check(e, {x: xv}, xv[np_key])
    assert e.attrs["key"] is key


def test_index_of_index_and_of_expression() -> None:
    x, xv = leaf((3, 4))
    e = (2 * x + 1)[1:, ::2][:, -1]
    check(e, {x: xv}, (2 * xv + 1)[1:, ::2][:, -1])


@pytest.mark.parametrize(
    ("shapes", "fn"),
    [
        ([(3,), (2,)], np.hstack),
        ([(), (3,), ()], np.hstack),
        ([(2, 3), (2, 1)], np.hstack),
        ([(3,), (3,)], np.vstack),
        ([(2, 3), (3,)], np.vstack),
        ([(), ()], np.vstack),
        ([(1, 2), (3, 2), (2,)], np.vstack),
    ],
)
def test_hstack_vstack_match_numpy(shapes: list[tuple[int, ...]], fn: Any) -> None:
    pairs = [leaf(s, start=10 * i) for i, s in enumerate(shapes)]
    env = dict(pairs)
    lp_fn = lp.hstack if fn is np.hstack else lp.vstack
    expr = lp_fn([x for x, _ in pairs])
    check(expr, env, fn([v for _, v in pairs]))


def test_stacks_accept_constants_and_single_items() -> None:
    x, xv = leaf((3,))
    check(lp.hstack([x, np.ones(2), 5.0]), {x: xv}, np.hstack([xv, np.ones(2), 5.0]))
    assert lp.hstack([x]) is x


def test_atoms_shapes_and_values() -> None:
    x, xv = leaf((2, 3))
    y, yv = leaf((3,), start=1)
    env = {x: xv, y: yv}
    check(lp.abs(x), env, np.abs(xv))
    check(abs(x), env, np.abs(xv))
    check(lp.pos(x - 1), env, np.maximum(xv - 1, 0))
    check(lp.maximum(x, y, 0.5), env, np.maximum(np.maximum(xv, yv), 0.5))
    check(lp.minimum(x, y), env, np.minimum(xv, yv))
    check(lp.maximum([x, y]), env, np.maximum(xv, yv))
    check(lp.max(x), env, xv.max())
    check(lp.min(x, axis=0), env, xv.min(axis=0))
    check(lp.max(x, axis=-1), env, xv.max(axis=-1))
    check(lp.sum_largest(x, 4), env, np.sort(xv.ravel())[-4:].sum())
    check(lp.norm1(x), env, np.abs(xv).sum())


def test_numbers_arrays_tensors_become_float64_constants() -> None:
    c = lp.Constant(torch.tensor([1, 2], dtype=torch.int32))
    assert c.attrs["value"].dtype == np.float64
    assert not c.attrs["value"].flags.writeable
    t = torch.tensor([1.0, 2.0], requires_grad=True).detach()
    x = lp.Variable(2)
    e = t * x
    assert e.args[0].op == "constant"
    np.testing.assert_array_equal(e.args[0].attrs["value"], [1.0, 2.0])
    assert (x + np.float32(2)).shape == (2,)
    column = [[1.0], [2.0]]
    assert (x + column).shape == (2, 2)


def test_torch_and_numpy_on_the_left_dispatch_to_expressions() -> None:
    x = lp.Variable(3, name="x")
    for data in (np.ones(3), torch.ones(3)):
        for e in (data + x, data - x, data * x):
            assert isinstance(e, lp.Expression)
            assert e.shape == (3,)
        assert isinstance(data @ x, lp.Expression)
        assert (data @ x).shape == ()
        c = data <= x
        assert isinstance(c, lp.Constraint)
        assert c.sense == ">=" and c.lhs is x
        c = data == x
        assert isinstance(c, lp.Constraint) and c.sense == "=="


def test_leaf_attrs_and_bounds() -> None:
    z = lp.Variable((2, 2), name="z", nonneg=True, lb=[-1.0, 2.0], ub=5)
    np.testing.assert_array_equal(z.attrs["lb"], [[0.0, 2.0], [0.0, 2.0]])
    np.testing.assert_array_equal(z.attrs["ub"], np.full((2, 2), 5.0))
    assert z.attrs["nonneg"] is True
    w = lp.Variable(3)
    assert w.attrs["lb"] is None and w.attrs["ub"] is None
    assert w.name == f"var{w.id}"
    free = lp.Variable(2, lb=-np.inf, ub=[np.inf, 1.0])
    assert free.attrs["lb"] is None
    np.testing.assert_array_equal(free.attrs["ub"], [np.inf, 1.0])
    p = lp.Parameter(4, nonneg=True)
    assert p.name == f"param{p.id}" and p.attrs["nonneg"] is True
    assert repr(z) == "Variable(name='z', shape=(2, 2))"
    assert repr(p) == f"Parameter(name='{p.name}', shape=(4,))"
    assert lp.Variable(np.int64(3)).shape == (3,)


def test_nodes_are_immutable_and_leaves_hashable() -> None:
    x = lp.Variable(2, name="x")
    with pytest.raises(AttributeError, match="immutable"):
        x.name = "y"  # type: ignore[misc]
    e = x + 1
    with pytest.raises(AttributeError, match="immutable"):
        e.shape = (3,)  # type: ignore[misc]
    d = {x: 1}
    assert d[x] == 1
    assert e.has_variables and not e.has_parameters
    p = lp.Parameter()
    assert (p * x).has_parameters and (p * x).curvature == "affine"
    assert (p * p).curvature == "constant"


def test_deep_chains_do_not_hit_recursion_limit() -> None:
    x = lp.Variable(3000)
    total = sum(x[i] for i in range(3000))
    assert total.shape == ()
    text = str(total)  # rendering walks the tree iteratively
    assert text.startswith(f"0 + {x.name}[0] + {x.name}[1] + ")
    assert text.endswith(f"{x.name}[2999]")
    prob = lp.Problem(lp.Minimize(total), [x >= 0])
    assert prob.variables() == [x]


# ---------------------------------------------------------------------- property test

SHAPES = st.sampled_from([(), (1,), (3,), (2, 3), (3, 1), (1, 3), (2, 1, 3)])


@st.composite
def op_chain(draw: Any) -> tuple[lp.Expression, np.ndarray, dict[Any, np.ndarray]]:
    shape = draw(SHAPES)
    x, xv = leaf(shape)
    env: dict[Any, np.ndarray] = {x: xv}
    expr, val = x, xv
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(
                ["add", "mul", "neg", "sum", "T", "reshape", "index", "matmul", "hstack", "div"]
            )
        )
        if kind in ("add", "mul", "div"):
            other_shape = draw(SHAPES)
            c = np.arange(int(np.prod(other_shape)), dtype=np.float64).reshape(other_shape) + 1
            try:
                np.broadcast_shapes(val.shape, other_shape)
            except ValueError:
                with pytest.raises(lp.DSLError, match="do not broadcast"):
                    _ = expr + c
                continue
            if kind == "add":
                expr, val = c + expr, c + val
            elif kind == "mul":
                expr, val = expr * c, val * c
            else:
                expr, val = expr / c, val / c
        elif kind == "neg":
            expr, val = -expr, -val
        elif kind == "sum":
            axis = draw(st.sampled_from([None, *range(-val.ndim, val.ndim)]))
            expr, val = expr.sum(axis), val.sum(axis)
        elif kind == "T":
            expr, val = expr.T, val.T
        elif kind == "reshape":
            expr, val = expr.reshape(-1), val.reshape(-1)
        elif kind == "index" and val.ndim:
            key = draw(st.sampled_from([0, -1, slice(None, None, -1), slice(0, None, 2)]))
            expr, val = expr[key], val[key]
        elif kind == "matmul" and val.ndim in (1, 2):
            c = np.arange(val.shape[-1] * 2, dtype=np.float64).reshape(val.shape[-1], 2)
            expr, val = expr @ c, val @ c
        elif kind == "hstack" and val.ndim == 1:
            expr, val = lp.hstack([expr, expr]), np.hstack([val, val])
    return expr, val, env


@settings(max_examples=100, deadline=None)
@given(op_chain())
def test_random_op_chains_match_numpy(case: tuple[lp.Expression, np.ndarray, dict]) -> None:
    expr, val, env = case
    assert expr.shape == val.shape
    np.testing.assert_allclose(evaluate(expr, env), val)


def test_powers_zero_and_one_and_a_column_major_reshape():
    # x ** 1 and x ** 0 are affine (CVXPY takes them; they were "not linear"); order="F" was
    # a bare TypeError, and CVXPY's reshape defaults to it
    x = lp.Variable((2, 3), name="x")
    assert x**1 is x
    assert (x**0).shape == (2, 3) and not (x**0).has_variables
    assert x**1.0 is x and not (x**0.0).has_variables
    with pytest.raises(lp.DSLError, match=r"^\(x \+ 1\) \*\* 2: powers are not linear"):
        _ = (x + 1) ** 2
    with pytest.raises(lp.DSLError, match=r"only row-major .* is x.T.reshape\(q, p\).T"):
        x.reshape(3, 2, order="F")
    assert x.reshape(3, 2, order="C").shape == (3, 2)


UFUNCS = (np.add, np.subtract, np.multiply, np.divide, np.abs, np.negative, np.positive)


@pytest.mark.parametrize("ufunc", [*UFUNCS, np.maximum, np.minimum, np.fmax, np.fmin])
def test_numpy_ufuncs_build_the_expressions_own_operations(ufunc: Any) -> None:
    """``np.maximum(x, arr)``, ``arr - x``, ... are lpdsl's operations and atoms, with the
    expression on either side: numpy's values on the data."""
    x, xv = leaf((2, 3))
    arr = np.arange(3, dtype=np.float64) + 0.5
    if ufunc.nin == 1:
        check(ufunc(x), {x: xv}, ufunc(xv))
        return
    check(ufunc(x, arr), {x: xv}, ufunc(xv, arr))
    if ufunc is not np.divide:  # arr / x is a ratio (a variable denominator), not an expression
        check(ufunc(arr, x), {x: xv}, ufunc(arr, xv))


def test_numpy_operators_and_scalars_on_the_left() -> None:
    x, xv = leaf((3,))
    arr = np.array([1.0, -2.0, 3.0])
    check(arr @ x, {x: xv}, arr @ xv)
    check(np.float32(2.0) * x - np.float64(1.5), {x: xv}, 2.0 * xv - 1.5)
    assert (arr <= x).sense == ">=" and (arr >= x).sense == "<=" and (arr == x).sense == "=="
