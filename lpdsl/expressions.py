"""The expression tree: leaves, operators, shapes, and the linearity and curvature checks.

Every expression a user writes becomes an immutable :class:`Expression` node (the contract in
``docs/architecture.md``): the compiler, the CVXPY oracle and the renderer all read these nodes
and nothing else. Checks happen where the user writes the operation, so an error points at the
line that caused it rather than at ``compile()`` much later:

* shapes follow numpy broadcasting, and a mismatch names both operands and their shapes;
* a product of two variable-dependent expressions is rejected (the model must stay an LP);
* a division by a variable-dependent scalar makes a :class:`Ratio`, which only an objective
  may hold (linear-fractional programs, compiled by Charnes–Cooper);
* curvature is tracked so that piecewise-linear atoms are only used where the problem stays
  an LP (a convex atom bounded above, minimised, ...).
"""

from __future__ import annotations

import itertools
import numbers
import reprlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from lpdsl.errors import DSLError

__all__ = [
    "Constant",
    "Expression",
    "Parameter",
    "Ratio",
    "Variable",
    "as_expression",
    "concatenate",
    "describe",
    "hstack",
    "vstack",
    "walk",
]

# One counter for every node: leaves get increasing ids in creation order, which is the order
# of ``Problem.parameters()`` / ``Problem.variables()``.
_ids = itertools.count()

Shape = tuple[int, ...]

# Sign of an expression without variables, used to decide whether a coefficient flips the
# curvature of a convex/concave expression it multiplies.
ZERO, NONNEG, NONPOS, UNKNOWN = "zero", "nonneg", "nonpos", "unknown"

_CURVATURES = ("constant", "affine", "convex", "concave")


# --------------------------------------------------------------------------------------------
# helpers


def restore_slots(obj: Any, state: Any) -> None:
    """``__setstate__`` of the immutable model classes: copies and pickles (``copy.deepcopy``
    of a network holding an :class:`~lpdsl.LPLayer`) set the slots past the guard."""
    own, slots = state if isinstance(state, tuple) else (state, None)
    for key, value in {**(own or {}), **(slots or {})}.items():
        object.__setattr__(obj, key, value)


class Lazy:
    """A message fragment rendered only if an error message actually uses it.

    Operations name their operands in errors (``z * t``); rendering them eagerly on every
    operation would make building a long sum quadratic.
    """

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], str]) -> None:
        self.fn = fn

    def __str__(self) -> str:
        try:
            return self.fn()
        except Exception:  # an operand that cannot be described (a numpy object array)
            return "an operation"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _shape_str(shape: Shape) -> str:
    return str(tuple(shape))


def describe(expr: Any, width: int = 48) -> str:
    """A short human name for an operand, for error messages.

    Leaves are named by their ``name``; other expressions by a (truncated) rendering, so a
    message can say *which* operand was wrong without printing a whole model.
    """
    if isinstance(expr, (Variable, Parameter)) or (isinstance(expr, Constant) and expr.name):
        return expr.name
    from lpdsl.rendering import to_text

    text = to_text(expr, width)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text


def describe_binary(left: Any, symbol: str, right: Any) -> str:
    """``left symbol right`` for messages, operands parenthesised where precedence needs it:
    ``sum(abs(x)) / (sum(x) + 5)``, where two :func:`describe` calls dropped the parentheses."""
    from lpdsl.rendering import binary_text

    return binary_text(left, symbol, right)


def desc(expr: Any) -> str:
    """``name (shape (3,))``: the usual way messages mention an operand."""
    return f"{describe(expr)} (shape {_shape_str(expr.shape)})"


def _normalize_shape(shape: Any, who: str) -> Shape:
    """Turn an int or a sequence of ints into a shape tuple, rejecting anything else."""
    if isinstance(shape, (bool, np.bool_)):
        raise DSLError(f"{who}: shape must be an int or a tuple of ints, got {shape!r}")
    if isinstance(shape, numbers.Integral):
        shape = (int(shape),)
    try:
        dims = tuple(shape)
    except TypeError:
        raise DSLError(
            f"{who}: shape must be an int or a tuple of ints, got {type(shape).__name__} {shape!r}"
        ) from None
    out = []
    for d in dims:
        if isinstance(d, (bool, np.bool_)) or not isinstance(d, numbers.Integral):
            raise DSLError(
                f"{who}: shape must be an int or a tuple of ints, got {shape!r} "
                f"(entry {d!r} is a {type(d).__name__})"
            )
        if int(d) < 0:
            raise DSLError(f"{who}: shape {tuple(shape)!r} has a negative dimension")
        out.append(int(d))
    return tuple(out)


def _requires_grad(value: Any) -> bool:
    """Whether ``value`` is, or (a nested list or tuple) holds, a tensor that requires grad."""
    if _is_torch_tensor(value):
        return bool(getattr(value, "requires_grad", False))
    if isinstance(value, (list, tuple)):
        return any(_requires_grad(v) for v in value)
    return False


def _grad_refusal(value: Any, who: str, role: str = "data", use: str = "") -> DSLError:
    """The error for a tensor that requires grad written into a model as fixed data.

    A model's data is converted to a float64 numpy array (a :class:`Constant`, or a bound):
    detached, so a gradient the user expects to reach the tensor would silently be missing.
    """
    if _is_torch_tensor(value):
        what = f"the torch tensor of shape {tuple(value.shape)} requires grad"
        decl = f"lp.Parameter({tuple(value.shape)})"
    else:
        what = f"the {type(value).__name__} holds a torch tensor that requires grad"
        decl = "lp.Parameter(shape)"
    return DSLError(
        f"{who}: {what}, but {role} written into a model is a constant, detached from "
        "autograd: no gradient would reach the tensor. To get gradients, declare "
        f"p = {decl}{use or ' in its place'} and pass the tensor when calling the layer "
        "(LPLayer(problem)(..., tensor)) or standard_form; to use it as a constant, pass "
        "tensor.detach()"
    )


def _to_float_array(value: Any, who: str) -> np.ndarray:
    """Numbers, numpy arrays, torch tensors and nested lists -> a finite float64 array.

    Raises:
        DSLError: also for a tensor that requires grad (see :func:`_grad_refusal`).
    """
    if _requires_grad(value):
        raise _grad_refusal(value, who)
    if isinstance(value, np.ndarray):
        arr = value
    elif _is_torch_tensor(value):
        arr = tensor_numpy(value, who)
    elif isinstance(value, (numbers.Number, np.generic, list, tuple)):
        if isinstance(value, (list, tuple)) and _holds_expressions(value):
            raise DSLError(
                f"{who}: a {type(value).__name__} of expressions is not an expression; "
                f"{COMBINE_ADVICE}"
            )
        try:
            arr = np.asarray(value)
        except ValueError as err:  # ragged nested lists
            raise DSLError(f"{who}: cannot turn {value!r} into an array ({err})") from None
    else:
        dense = (
            " (a scipy.sparse matrix: convert it with .toarray())"
            if hasattr(value, "toarray")
            else ""
        )
        raise DSLError(
            f"{who}: unsupported operand type {type(value).__module__}.{type(value).__name__}; "
            f"use lpdsl expressions, Python numbers, numpy arrays or torch tensors{dense}"
        )
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        if arr.dtype == object and _holds_expressions(arr.reshape(-1).tolist()):
            raise DSLError(
                f"{who}: a numpy array of expressions (shape {arr.shape}) is not an expression; "
                f"{COMBINE_ADVICE}"
            )
        raise DSLError(
            f"{who}: cannot use an array of dtype {arr.dtype} (shape {arr.shape}) as data; "
            "use numbers, numpy arrays or torch tensors of real numbers"
        )
    if np.iscomplexobj(arr):
        raise DSLError(f"{who}: complex data (shape {arr.shape}) is not supported")
    arr = np.array(arr, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        raise DSLError(
            f"{who}: data of shape {arr.shape} has {int(np.isnan(arr).sum())} NaN and "
            f"{int(np.isinf(arr).sum())} Inf entries; a model needs finite numbers"
        )
    return arr


def _is_torch_tensor(value: Any) -> bool:
    # Checked by module name so that this module never imports torch for a plain numpy model.
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def tensor_numpy(t: Any, who: str) -> np.ndarray:
    """A torch tensor's values as a numpy array: a meta tensor is a DSLError naming ``who``
    (torch's "Cannot copy out of meta tensor" came from inside lpdsl), and dtypes numpy
    lacks (bfloat16: "Got unsupported ScalarType BFloat16") go through float64 / int64 (a
    reviewing helper's probes)."""
    if t.is_meta:
        raise DSLError(
            f"{who}: a meta tensor (shape {tuple(t.shape)}) holds no data; pass a tensor on a "
            "real device (cpu, cuda)"
        )
    t = t.detach().cpu()
    t = t.to_dense() if t.is_sparse else t
    try:
        return t.numpy()
    except TypeError:  # a dtype numpy does not have
        import torch

        wide = torch.float64 if t.is_floating_point() else torch.int64
        return t.to(torch.complex128 if t.is_complex() else wide).numpy()


def _check_bool(name: str, value: Any, of: str) -> bool:
    """``value`` if it is a bool, else DSLError (``validation.check_bool``, which imports
    torch)."""
    if not isinstance(value, (bool, np.bool_)):
        raise DSLError(f"Expected argument `{name}` of {of} to be a bool but got {value!r}")
    return bool(value)


def as_expression(value: Any, who: str | Callable[[], str] = "operand") -> Expression:
    """Turn an operand into an :class:`Expression`; constants become :class:`Constant` leaves.

    Args:
        value: An expression, number, numpy array, torch tensor or nested list of numbers.
        who: The operation, for messages (a callable is evaluated only when an error is
            raised, so the common path renders nothing).

    Raises:
        DSLError: for a :class:`Ratio` (only valid as a whole objective), for a constraint,
            for a type that is not a number, array, tensor or expression, or for a tensor
            that requires grad (see :class:`Constant`).
    """
    if isinstance(value, Expression):
        return value
    where = who if isinstance(who, str) else Lazy(who)  # rendered only into an error
    if isinstance(value, Ratio):
        raise _ratio_misuse(value, where)
    if type(value).__name__ == "Constraint":
        raise DSLError(
            f"{where}: a constraint ({value}) cannot be used as an operand; constraints go in "
            "the list given to lp.Problem"
        )
    return Constant(_to_float_array(value, where))


def _operand(self: Expression, other: Any, symbol: str, reflected: bool) -> Expression:
    """``other`` as an expression; on failure the message shows the written operation."""

    def who() -> str:
        text = describe(other) if isinstance(other, Ratio) else type(other).__name__
        return (
            f"{text} {symbol} {describe(self)}"
            if reflected
            else f"{describe(self)} {symbol} {text}"
        )

    return as_expression(other, who)


def _ratio_misuse(ratio: Ratio, where: str) -> DSLError:
    return DSLError(
        f"{where}: {describe(ratio)} is a ratio (its denominator {describe(ratio.den)} depends "
        "on variables); a ratio is only valid as the whole objective, "
        "lp.Minimize(num / den) or lp.Maximize(num / den). Anywhere else the model would not "
        "be linear"
    )


def broadcast_shape(op: str | Lazy, a: Expression, b: Expression) -> Shape:
    try:
        return tuple(np.broadcast_shapes(a.shape, b.shape))
    except ValueError:
        raise DSLError(
            f"{op}: operands {desc(a)} and {desc(b)} do not broadcast together (numpy "
            "broadcasting aligns trailing dimensions, which must be equal or 1)"
        ) from None


def _join_curvature(op: str | Lazy, parts: Sequence[Expression]) -> str:
    """Curvature of a sum (or concatenation) of terms: affine absorbs, convex+concave fails."""
    kinds = {p.curvature for p in parts}
    convex = [p for p in parts if p.curvature == "convex"]
    concave = [p for p in parts if p.curvature == "concave"]
    if convex and concave:
        raise DSLError(
            f"{op}: combines the convex {desc(convex[0])} with the concave {desc(concave[0])}; "
            "the result is neither convex nor concave, so no LP can minimise, maximise or bound "
            "it. Keep convex terms (abs, pos, maximum, max, sum_largest, norm1) and concave "
            "terms (minimum, min, negated convex atoms) on opposite sides of a constraint"
        )
    if convex:
        return "convex"
    if concave:
        return "concave"
    if "affine" in kinds:
        return "affine"
    return "constant"


def _flip(curvature: str) -> str:
    return {"convex": "concave", "concave": "convex"}.get(curvature, curvature)


def _sign_product(a: str, b: str) -> str:
    if ZERO in (a, b):
        return ZERO
    if UNKNOWN in (a, b):
        return UNKNOWN
    return NONNEG if a == b else NONPOS


def _sign_join(signs: Sequence[str]) -> str:
    """Sign of a sum (or concatenation) of terms with the given signs."""
    rest = {s for s in signs if s != ZERO}
    if not rest:
        return ZERO
    if len(rest) == 1:
        return rest.pop()
    return UNKNOWN


def _scaled_curvature(op: str | Lazy, coef: Expression, expr: Expression) -> str:
    """Curvature of ``coef * expr`` (or ``@``, ``/``) where ``coef`` has no variables."""
    if expr.curvature in ("constant", "affine"):
        return expr.curvature
    sign = coef._sign
    if sign == ZERO:
        return "affine" if expr.has_variables else "constant"
    if sign == NONNEG:
        return expr.curvature
    if sign == NONPOS:
        return _flip(expr.curvature)
    hint = (
        "declare the parameter with nonneg=True"
        if coef.has_parameters
        else "split the constant into its positive and negative parts"
    )
    # a constant's sign is known: mixed (a reviewing helper read "not known" as a bug)
    sign_text = "whose sign is not known" if coef.has_parameters else "which has both signs"
    raise DSLError(
        f"{op}: the {expr.curvature} {desc(expr)} is scaled by {desc(coef)}, {sign_text}; "
        "the product is convex where the coefficient is positive and concave where it is "
        f"negative, which is not an LP. Use a coefficient of known sign ({hint})"
    )


# --------------------------------------------------------------------------------------------
# the node


#: Python's max(z), min(z) and sorted(z) compare z's entries with < and >, which the user
#: never wrote: the strict-inequality message points at the atoms.
_BUILTIN_ORDER = (
    " (Python's max, min and sorted compare expressions with < and >: use lp.max(x) / "
    "lp.min(x) for the largest / smallest entry, lp.maximum / lp.minimum elementwise)"
)


# numpy ufuncs on expressions (``arr + x``, ``np.maximum(x, 0)``): the operators are the
# expressions' own (a reflected one where the expression is the right operand), the
# piecewise-linear ufuncs lpdsl's atoms, anything else a DSLError that names what to use.
_UFUNC_OPERATORS = {
    "add": ("__add__", "__radd__"),
    "subtract": ("__sub__", "__rsub__"),
    "multiply": ("__mul__", "__rmul__"),
    "matmul": ("__matmul__", "__rmatmul__"),
    "divide": ("__truediv__", "__rtruediv__"),
    "power": ("__pow__", "__rpow__"),
    "floor_divide": ("__floordiv__", "__rfloordiv__"),
    "remainder": ("__mod__", "__rmod__"),
    "less_equal": ("__le__", "__ge__"),
    "greater_equal": ("__ge__", "__le__"),
    "equal": ("__eq__", "__eq__"),
    "not_equal": ("__ne__", "__ne__"),
    "less": ("__lt__", "__gt__"),
    "greater": ("__gt__", "__lt__"),
    "negative": ("__neg__", None),
    "positive": ("__pos__", None),
}
_UFUNC_ATOMS = {
    "absolute": "abs",
    "maximum": "maximum",
    "fmax": "maximum",
    "minimum": "minimum",
    "fmin": "minimum",
}

#: what to write for numpy's reductions (``np.max(x)`` is ``maximum.reduce``)
_UFUNC_REDUCTIONS = {"add": "x.sum()", "maximum": "lp.max(x)", "minimum": "lp.min(x)"}


def _array_ufunc(self: Any, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
    """numpy's hook for ufuncs with an expression among the operands (see above)."""
    name = ufunc.__name__
    ours = [i for i, v in enumerate(inputs) if isinstance(v, (Expression, Ratio))]
    shown = Lazy(lambda: describe(inputs[ours[0]]))  # rendered only into an error
    if method != "__call__":
        use = _UFUNC_REDUCTIONS.get(name) if method == "reduce" else None
        use = use or "the expression's methods and lpdsl's atoms"
        raise DSLError(f"numpy's {name}.{method} cannot take the expression {shown}: use {use}")
    if kwargs:
        raise DSLError(
            f"numpy's {name} cannot take the expression {shown} with "
            f"{', '.join(f'{k}=' for k in sorted(kwargs))}: expressions are immutable and "
            "exact; call it without those arguments"
        )
    if name in _UFUNC_ATOMS:
        from lpdsl import atoms

        return getattr(atoms, _UFUNC_ATOMS[name])(*inputs)
    if name in _UFUNC_OPERATORS:
        forward, reflected = _UFUNC_OPERATORS[name]
        if len(inputs) == 1 or ours[0] == 0:
            return getattr(inputs[0], forward)(*inputs[1:])
        return getattr(inputs[1], reflected)(inputs[0])
    raise DSLError(
        f"numpy's {name} cannot take the expression {shown}: an LP is built from +, -, *, /, "
        "@, comparisons and lpdsl's piecewise-linear atoms (lp.abs, lp.maximum, lp.minimum, "
        "lp.pos, lp.max, lp.min, lp.norm1, lp.sum_largest), which numpy's abs, maximum and "
        "minimum also reach"
    )


# numpy functions (not ufuncs) on expressions: numpy's own code runs where it only reaches the
# expression's methods (np.sum(x) is x.sum(), np.reshape x.reshape); np.dot and np.inner are
# lpdsl's @ (or *). The others built object arrays of scalar expressions, which failed later
# with a message about something else ("chained comparisons" for np.vstack([x, x]) <= 1 and
# np.dot(A, x) <= 1, a raw SystemError for np.dot(X, x): reviewing helpers' probes,
# eighteenth pass), so they are refused with lpdsl's spelling.
# fmt: off
_NUMPY_FUNCTIONS_KEPT = frozenset((
    "shape", "ndim", "size", "sum", "reshape", "flip", "amax", "amin", "max", "min", "prod",
    "clip",
))
# fmt: on
_NUMPY_SPELLINGS = {
    "transpose": "X.T",
    "vstack": "lp.vstack([...])",
    "hstack": "lp.hstack([...])",
    "concatenate": "lp.hstack([...]) or lp.vstack([...])",
    "stack": "lp.vstack([...]) of the expressions",
    "ravel": "x.reshape(-1)",
    "squeeze": "x.reshape(...)",
    "expand_dims": "x.reshape(...)",
    "broadcast_to": "x + np.zeros(shape)",
    "diag": "x * np.eye(n) for the diagonal matrix of x, X[i, i] entries for a diagonal",
    "where": "mask * x + (1 - mask) * y with a 0/1 array mask",
    "cumsum": "np.tril(np.ones((n, n))) @ x",
    "outer": "x.reshape(-1, 1) * v",
    "tensordot": "@",
    "einsum": "@, * and .sum(axis)",
    "mean": "x.sum(axis) / n",
    "average": "(w * x).sum() / w.sum() with a weight array w",
    "trace": "the sum of the entries X[i, i]",
    "norm": "lp.norm1(x) for the 1-norm, lp.max(lp.abs(x)) for the max-norm",
    "roll": "x[np.roll(np.arange(n), k)]",
}


def _ndim(value: Any) -> int:
    return len(value.shape) if hasattr(value, "shape") else int(np.ndim(value))


#: What to do with a list or array of expressions where one expression is expected.
COMBINE_ADVICE = "combine them with lp.hstack([...]) (or lp.vstack), or sum them with sum([...])"


def _holds_expressions(items: Any) -> bool:
    """Whether a (nested) list or tuple holds an lpdsl expression."""
    return any(
        isinstance(v, Expression) or (isinstance(v, (list, tuple)) and _holds_expressions(v))
        for v in items
    )


def _called_from_scipy_sparse() -> bool:
    """Whether scipy.sparse's code is on the stack: ``M @ x`` with a scipy.sparse ``M``
    reaches numpy's ``ravel`` of ``x`` through scipy, and the message named ravel (a reviewing
    helper's probe, twentieth pass)."""
    frame = sys._getframe(1)
    while frame is not None:
        if "scipy/sparse" in frame.f_code.co_filename.replace("\\", "/"):
            return True
        frame = frame.f_back
    return False


def _array_function(self: Any, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
    """numpy's hook for its functions with an expression among the arguments (see above)."""
    name = func.__name__
    if name in _NUMPY_FUNCTIONS_KEPT:
        return func._implementation(*args, **kwargs)
    if name in ("dot", "inner") and len(args) == 2 and not kwargs:
        a, b = args
        if _ndim(a) == 0 or _ndim(b) == 0:
            return a * b
        if max(_ndim(a), _ndim(b)) <= 2 and (name == "dot" or _ndim(b) == 1):
            return a @ b
        if name == "inner" and _ndim(a) <= 2 and _ndim(b) == 2:  # over both last axes
            return a @ b.T
    if _called_from_scipy_sparse():
        raise DSLError(
            f"a scipy.sparse matrix cannot multiply the expression {describe(self)}: scipy "
            "takes it for an array of separate scalars. Convert the matrix, `M.toarray() @ x` "
            "(the compiled model keeps only its nonzeros), or pass `M.toarray()` as a "
            "Parameter's value"
        )
    use = _NUMPY_SPELLINGS.get(
        name,
        "the expression's operators and methods (+, -, *, /, @, "
        "indexing, .T, .reshape, .sum) and lp.hstack / lp.vstack",
    )
    raise DSLError(
        f"numpy's {name} cannot take the expression {describe(self)}: numpy would treat it as an "
        f"array of separate scalar expressions, which no LP model takes; use {use}"
    )


# torch functions on expressions: a tensor's operator (``t * x``, ``t <= x``) calls torch's
# hook with the tensor's own method (``t.mul(x)`` calls it with the same one), which is refused
# with a TypeError (_TensorMethodError): torch turns that into NotImplemented under an operator,
# so Python takes the expression's reflected one, and a named method shows lpdsl's message (it
# showed torch's "Multiple dispatch failed"); a torch function (``torch.sum(x)``, ``F.relu(x)``)
# is refused with lpdsl's spelling (it raised torch's "argument 'input' must be Tensor, not
# Variable").
_TORCH_SPELLINGS = {
    **_NUMPY_SPELLINGS,
    "sum": "x.sum() (x.sum(axis=...) along an axis)",
    "abs": "lp.abs(x)",
    "maximum": "lp.maximum(x, y) (elementwise), lp.max(x) for the largest entry",
    "minimum": "lp.minimum(x, y) (elementwise), lp.min(x) for the smallest entry",
    "max": "lp.max(x) for the largest entry, lp.maximum(x, y) elementwise",
    "min": "lp.min(x) for the smallest entry, lp.minimum(x, y) elementwise",
    "amax": "lp.max(x)",
    "amin": "lp.min(x)",
    "relu": "lp.pos(x)",
    "clamp": "lp.maximum(x, lo) and lp.minimum(x, hi)",
    "clip": "lp.maximum(x, lo) and lp.minimum(x, hi)",
    "cat": "lp.hstack([...]) or lp.vstack([...])",
    "concat": "lp.hstack([...]) or lp.vstack([...])",
    "matmul": "A @ x",
    "mm": "A @ X",
    "mv": "A @ x",
    "dot": "w @ x",
    "mul": "w * x",
    "add": "x + y",
    "sub": "x - y",
    "div": "x / y",
    "true_divide": "x / y",
    "le": "x <= y",
    "ge": "x >= y",
    "eq": "x == y",
    "t": "X.T",
    "flatten": "x.reshape(-1)",
    "unsqueeze": "x.reshape(...)",
}


#: A tensor's methods that are operators' spellings (``t.mul(x)`` for ``t * x``).
_TENSOR_OPERATORS = {"mul", "add", "sub", "div", "true_divide", "matmul", "mm", "mv", "dot"}
_TENSOR_OPERATORS |= {"le", "ge", "eq"}


class _TensorMethodError(DSLError, TypeError):
    """A tensor's method given an expression. A TypeError too: under a tensor's operator
    (``t * x``) torch turns it into NotImplemented and Python takes the expression's reflected
    operator; a named method (``t.mul(x)``) shows its message."""


def _torch_function(cls: type, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
    """torch's hook for its functions with an expression among the arguments (see above)."""
    name = getattr(func, "__name__", repr(func))
    method = getattr(func, "__qualname__", "").startswith(("TensorBase.", "Tensor."))
    flat = [*args, *(kwargs or {}).values()]
    flat += [v for a in flat if isinstance(a, (list, tuple)) for v in a]  # torch.stack([x, y])
    ours = next((v for v in flat if isinstance(v, (Expression, Ratio))), None)
    what = "an lpdsl expression" if ours is None else f"the expression {describe(ours)}"
    use = _TORCH_SPELLINGS.get(
        name,
        "the expression's operators and methods (+, -, *, /, @, indexing, .T, .reshape, .sum) "
        "and lpdsl's atoms (lp.abs, lp.maximum, lp.minimum, lp.pos, lp.max, lp.min, lp.hstack, "
        "lp.vstack)",
    )
    if method:
        if name == "__setitem__":
            use = "lp.hstack([...]) or lp.vstack([...]) to assemble expressions"
        elif name in _TENSOR_OPERATORS:
            use += " (an operator, with the tensor on either side)"
        raise _TensorMethodError(
            f"torch.Tensor.{name} cannot take {what}: a tensor's methods compute on tensors, "
            f"and an LP is declared with lpdsl's own operations; use {use}"
        )
    module = getattr(func, "__module__", None) or "torch"
    raise DSLError(
        f"{module}.{name} cannot take {what}: torch functions compute on tensors, and an LP "
        f"is declared with lpdsl's own operations; use {use}"
    )


class Expression:
    """An immutable node of the expression tree (see ``docs/architecture.md``).

    Attributes:
        op: The operation, e.g. ``"add"``, ``"matmul"``, ``"index"``, ``"variable"``.
        args: The operands.
        shape: The numpy shape of the value.
        attrs: Operation-specific data (read-only by convention).
        name: A leaf's name; ``""`` for other nodes.
        id: A global creation counter (orders leaves by creation).
        has_variables: Whether some :class:`Variable` occurs below this node.
        has_parameters: Whether some :class:`Parameter` occurs below this node.
        curvature: ``"constant"``, ``"affine"``, ``"convex"`` or ``"concave"``.
    """

    __slots__ = (
        "_sign",
        "args",
        "attrs",
        "curvature",
        "has_parameters",
        "has_variables",
        "id",
        "name",
        "op",
        "shape",
    )

    # numpy and torch must hand operations with an expression to us (``arr @ x``, ``arr <=
    # x``, ``np.maximum(x, 0)``), instead of broadcasting over the expression as an object.
    __array_ufunc__ = _array_ufunc
    __array_function__ = _array_function
    __array_priority__ = 1000
    __torch_function__ = classmethod(_torch_function)
    # ``==`` builds a constraint, so identity hashing keeps leaves usable as dict keys.
    __hash__ = object.__hash__

    op: str
    args: tuple[Expression, ...]
    shape: Shape
    attrs: dict[str, Any]
    name: str
    id: int
    has_variables: bool
    has_parameters: bool
    curvature: str
    _sign: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Expression:
        # Inner nodes are instances of the private subclass ``_Node``, a sibling of the leaf
        # classes. Python lets a right operand whose type is a *subclass* of the left's answer
        # a comparison first, so with plain ``Expression`` inner nodes ``abs(x) <= t`` would
        # be built as ``t >= abs(x)``; siblings keep the comparison as the user wrote it.
        return object.__new__(_Node if cls is Expression else cls)

    def __init__(
        self,
        op: str,
        args: Sequence[Expression],
        shape: Shape,
        attrs: dict[str, Any] | None = None,
        curvature: str | None = None,
        name: str = "",
    ) -> None:
        """Build a node. Library code calls this; users build nodes through operators.

        Args:
            op: The operation name (the table in ``docs/architecture.md``).
            args: The operands, already :class:`Expression` nodes.
            shape: The result's shape, already checked by the caller.
            attrs: Operation-specific data.
            curvature: The result's curvature, computed by the caller; for ops that
                preserve it, ``None`` takes the join of the operands' curvatures.
            name: The node's name (leaves only).
        """
        args = tuple(args)
        attrs = {} if attrs is None else attrs
        if curvature is None:
            curvature = _join_curvature(op, args) if args else "constant"
        if curvature not in _CURVATURES:
            raise ValueError(f"unknown curvature {curvature!r}")
        set_ = object.__setattr__
        set_(self, "op", op)
        set_(self, "args", args)
        set_(self, "shape", tuple(int(d) for d in shape))
        set_(self, "attrs", attrs)
        set_(self, "name", name)
        set_(self, "id", next(_ids))
        set_(self, "has_variables", op == "variable" or any(a.has_variables for a in args))
        set_(self, "has_parameters", op == "parameter" or any(a.has_parameters for a in args))
        set_(self, "curvature", curvature)
        set_(self, "_sign", _infer_sign(op, args, attrs))

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"lpdsl expressions are immutable; cannot set {key!r} (build a new expression)"
        )

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"lpdsl expressions are immutable; cannot delete {key!r}")

    __setstate__ = restore_slots

    # ---------------------------------------------------------------- shape helpers

    @property
    def size(self) -> int:
        """Number of entries (the product of the shape)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError(f"len() of the scalar expression {describe(self)} (shape ())")
        return self.shape[0]

    def __iter__(self) -> Iterator[Expression]:
        if not self.shape:
            raise TypeError(f"cannot iterate over the scalar expression {describe(self)}")
        for i in range(self.shape[0]):
            yield self[i]

    def __bool__(self) -> bool:
        raise DSLError(
            f"the truth value of the expression {describe(self)} is not defined: expressions "
            "are symbolic. Chained comparisons (a <= x <= b) and `if expr` do not work; write "
            "each constraint separately, e.g. [a <= x, x <= b]"
        )

    def __float__(self) -> float:
        if self.op == "constant" and self.shape == ():
            return float(self.attrs["value"])
        raise DSLError(
            f"the expression {describe(self)} has no number: expressions are symbolic. Solve "
            "the model and compute it from the variables' values"
        )

    def __repr__(self) -> str:
        if self.op in ("variable", "parameter"):
            return f"{type(self).__name__}(name={self.name!r}, shape={self.shape})"
        from lpdsl.rendering import to_text

        return f"Expression({to_text(self)!r}, shape={self.shape}, {self.curvature})"

    def __str__(self) -> str:
        from lpdsl.rendering import to_text

        return to_text(self)

    def _repr_latex_(self) -> str:
        from lpdsl.rendering import to_latex

        return f"${to_latex(self)}$"

    # ---------------------------------------------------------------- arithmetic

    def __add__(self, other: Any) -> Expression:
        return _add(self, _operand(self, other, "+", False), "+")

    def __radd__(self, other: Any) -> Expression:
        return _add(_operand(self, other, "+", True), self, "+")

    def __sub__(self, other: Any) -> Expression:
        o = _operand(self, other, "-", False)
        return _add(self, _neg(o), "-", shown=(self, o))

    def __rsub__(self, other: Any) -> Expression:
        o = _operand(self, other, "-", True)
        return _add(o, _neg(self), "-", shown=(o, self))

    def __neg__(self) -> Expression:
        return _neg(self)

    def __pos__(self) -> Expression:
        return self

    def __abs__(self) -> Expression:
        from lpdsl.atoms import abs as abs_atom

        return abs_atom(self)

    def __mul__(self, other: Any) -> Expression:
        return _mul(self, _operand(self, other, "*", False))

    def __rmul__(self, other: Any) -> Expression:
        return _mul(_operand(self, other, "*", True), self)

    def __matmul__(self, other: Any) -> Expression:
        return _matmul(self, _operand(self, other, "@", False))

    def __rmatmul__(self, other: Any) -> Expression:
        return _matmul(_operand(self, other, "@", True), self)

    def __truediv__(self, other: Any) -> Expression | Ratio:
        return _div(self, _operand(self, other, "/", False))

    def __rtruediv__(self, other: Any) -> Expression | Ratio:
        return _div(_operand(self, other, "/", True), self)

    def __pow__(self, other: Any) -> Expression:
        # x ** 1 is x and x ** 0 is 1 (also 1.0 and 0.0), as in CVXPY (refused before)
        if isinstance(other, numbers.Real) and not isinstance(other, bool) and other in (0, 1):
            return self if other == 1 else as_expression(np.ones(self.shape), "x ** 0")
        base = describe(self)
        base = base if self.op in ("variable", "parameter", "constant") else f"({base})"
        raise DSLError(
            f"{base} ** {other!r}: powers are not linear; an LP allows sums of "
            "expressions scaled by constants or parameters"
        )

    def __rpow__(self, other: Any) -> Expression:
        raise DSLError(f"{other!r} ** {describe(self)}: powers of expressions are not linear")

    def __floordiv__(self, other: Any) -> Expression:
        raise DSLError(f"{describe(self)} // ...: floor division is not linear; use /")

    __rfloordiv__ = __floordiv__

    def __mod__(self, other: Any) -> Expression:
        raise DSLError(f"{describe(self)} % ...: the remainder is not linear")

    __rmod__ = __mod__

    # ---------------------------------------------------------------- constraints

    def __le__(self, other: Any) -> Any:
        from lpdsl.problem import Constraint

        return Constraint(self, other, "<=")

    def __ge__(self, other: Any) -> Any:
        from lpdsl.problem import Constraint

        return Constraint(self, other, ">=")

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        from lpdsl.problem import Constraint

        return Constraint(self, other, "==")

    def __ne__(self, other: Any) -> Any:  # type: ignore[override]
        raise DSLError(
            f"{describe(self)} != ...: 'not equal' is not a convex constraint and no LP can "
            "express it; use <=, >= or =="
        )

    def __lt__(self, other: Any) -> Any:
        raise DSLError(
            f"{describe(self)} < ...: strict inequalities are not supported (an LP's feasible "
            f"set is closed); use <={_BUILTIN_ORDER}"
        )

    def __gt__(self, other: Any) -> Any:
        raise DSLError(
            f"{describe(self)} > ...: strict inequalities are not supported (an LP's feasible "
            f"set is closed); use >={_BUILTIN_ORDER}"
        )

    def clip(self, *args: Any, **kwargs: Any) -> Expression:
        """Refused with what to write (``np.clip(x, lo, hi)`` calls it): a clip is a minimum of
        a maximum, a nesting of piecewise-linear atoms that lpdsl does not build (numpy's
        fallback compared the entries and said "chained comparisons")."""
        raise DSLError(
            f"clip of {describe(self)}: min(max(x, lo), hi) nests two piecewise-linear atoms, "
            "which an LP model here does not build; write lp.maximum(x, lo) or lp.minimum(x, "
            "hi) alone, or bound a variable (lb=, ub=) or add the constraints lo <= x, x <= hi"
        )

    # ---------------------------------------------------------------- shape operations

    def sum(self, axis: int | None = None, **numpy_args: Any) -> Expression:
        """Sum of all entries, or along one axis (numpy semantics).

        Args:
            axis: ``None`` sums everything to a scalar; an int (negative counts from the end)
                removes that axis.
            **numpy_args: ``np.sum(x)`` calls ``x.sum(axis=None, out=None)``: ``out=None``,
                ``dtype=None`` and ``keepdims=False`` are accepted, other values refused.
        """
        defaults = {"out": None, "dtype": None, "keepdims": False}
        bad = {k: v for k, v in numpy_args.items() if k not in defaults or v is not defaults[k]}
        if bad:
            given = ", ".join(f"{k}={v!r}" for k, v in bad.items())
            raise DSLError(
                f"{describe(self)}.sum(): {given} is not supported; sum takes only axis "
                "(np.sum(x) and np.sum(x, axis=k) work)"
            )
        if axis is None:
            return Expression("sum", (self,), (), {"axis": None})
        ax = normalize_axis(axis, self, "sum")
        shape = self.shape[:ax] + self.shape[ax + 1 :]
        return Expression("sum", (self,), shape, {"axis": ax})

    @property
    def T(self) -> Expression:
        """The transpose (axes reversed); 0-D and 1-D expressions are returned unchanged."""
        if self.ndim < 2:
            return self
        return Expression("transpose", (self,), self.shape[::-1])

    def reshape(self, *shape: Any, order: str = "C") -> Expression:
        """Row-major reshape, as numpy; one dimension may be ``-1``.

        Args:
            *shape: the new shape, as ints or one tuple.
            order: ``"C"`` (row-major) only. CVXPY's reshape defaults to ``"F"``
                (column-major): a ported ``order="F"`` is refused, not read row-major.
        """
        if order != "C":
            raise DSLError(
                f"{describe(self)}.reshape(..., order={order!r}): only row-major (order='C', "
                "numpy's default) is supported; a column-major reshape of a matrix to (p, q) "
                "is x.T.reshape(q, p).T, to (k,) x.T.reshape(-1)"
            )
        if len(shape) == 1 and not isinstance(shape[0], numbers.Integral):
            shape = shape[0]
        target = _resolve_reshape(self, shape)
        if target == self.shape:
            return self
        return Expression("reshape", (self,), target, {"shape": target})

    def flatten(self) -> Expression:
        """The entries in row-major order as a 1-D expression."""
        return self.reshape(-1)

    def __getitem__(self, key: Any) -> Expression:
        return _index(self, key)


class _Node(Expression):
    """An inner node; ``Expression(...)`` makes these (see :meth:`Expression.__new__`)."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# leaves


class Variable(Expression):
    """A decision variable of the LP.

    Args:
        shape: ``()`` (scalar, the default), an int ``n`` for ``(n,)``, or a tuple.
        name: Used in messages and renderings; auto-named ``var<id>`` if omitted.
        nonneg: Require every entry to be ``>= 0``.
        lb: Lower bound: a real scalar or an array broadcastable to ``shape`` (numpy, a
            torch tensor that does not require grad, nested lists); strings are refused,
            not parsed.
        ub: Upper bound: as ``lb``.

    ``attrs["lb"]`` / ``attrs["ub"]`` hold the effective bounds as read-only float64 arrays of
    the variable's shape (``nonneg`` folded in as ``max(0, lb)``), or ``None`` for no bound.
    Entries may be ``-inf`` / ``+inf`` where an array bound leaves some entries unbounded.
    """

    __slots__ = ()

    def __init__(
        self,
        shape: Any = (),
        name: str | None = None,
        *,
        nonneg: bool = False,
        lb: Any = None,
        ub: Any = None,
    ) -> None:
        shape = _normalize_shape(shape, "Variable")
        super().__init__("variable", (), shape, {}, "affine", "")
        if name is None:
            name = f"var{self.id}"
        _check_name(name, "Variable")
        object.__setattr__(self, "name", name)
        # nonneg="False" was truthy: a silently different LP (a reviewing helper's probe)
        nonneg = _check_bool("nonneg", nonneg, f"Variable {name!r}")
        lo = _bound(lb, shape, name, "lb")
        hi = _bound(ub, shape, name, "ub")
        if nonneg:
            lo = np.zeros(shape) if lo is None else np.maximum(lo, 0.0)
        if lo is not None and hi is not None and (lo > hi).any():
            where = np.argwhere(lo > hi)
            first = tuple(int(i) for i in where[0])
            raise DSLError(
                f"Variable {name!r} (shape {shape}): lower bound exceeds upper bound at "
                f"{len(where)} entr{'y' if len(where) == 1 else 'ies'}, first at index {first}: "
                f"lb={lo[first]:g} > ub={hi[first]:g}"
                + (" (nonneg=True makes the lower bound at least 0)" if nonneg else "")
            )
        for arr in (lo, hi):
            if arr is not None:
                arr.setflags(write=False)
        self.attrs.update({"lb": lo, "ub": hi, "nonneg": bool(nonneg)})


class Parameter(Expression):
    """Data given at call time (e.g. network outputs); may carry leading batch dimensions.

    Args:
        shape: ``()`` (scalar, the default), an int ``n`` for ``(n,)``, or a tuple.
        name: Used in messages and renderings; auto-named ``param<id>`` if omitted.
        nonneg: Declares every value ``>= 0`` (checked when values are bound). Only a
            nonnegative parameter may scale a convex or concave expression.
    """

    __slots__ = ()

    def __init__(self, shape: Any = (), name: str | None = None, *, nonneg: bool = False) -> None:
        shape = _normalize_shape(shape, "Parameter")
        nonneg = _check_bool(
            "nonneg", nonneg, "Parameter" if name is None else f"Parameter {name!r}"
        )
        super().__init__("parameter", (), shape, {"nonneg": nonneg}, "constant", "")
        if name is None:
            name = f"param{self.id}"
        _check_name(name, "Parameter")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_sign", NONNEG if nonneg else UNKNOWN)


class Constant(Expression):
    """A fixed array of data; numbers, numpy arrays and torch tensors become these.

    A constant is fixed data: its value is copied into a float64 numpy array, outside
    autograd. Data that should carry gradients goes in as a :class:`Parameter`, whose value
    is passed at call time (``LPLayer(problem)(tensor)`` or ``standard_form(tensor)``).

    Args:
        value: A number, numpy array, torch tensor (converted to float64) or nested list of
            numbers. Must be finite.
        name: Optional name for messages and renderings.

    Raises:
        DSLError: for a torch tensor that requires grad (or a list holding one): it would be
            detached and its gradient silently lost. Declare a Parameter and pass the tensor
            at call time, or pass ``tensor.detach()`` to use it as a constant. The same holds
            for tensors written into expressions (``w @ x``) and for a Variable's ``lb``/``ub``.
    """

    __slots__ = ()

    def __init__(self, value: Any, name: str | None = None) -> None:
        arr = _to_float_array(value, "Constant")
        arr.setflags(write=False)
        super().__init__("constant", (), arr.shape, {"value": arr}, "constant", name or "")

    @property
    def value(self) -> np.ndarray:
        """The constant's data (read-only float64 array)."""
        return self.attrs["value"]


def _check_name(name: Any, who: str) -> None:
    if not isinstance(name, str) or not name:
        raise DSLError(f"{who}: name must be a non-empty string, got {name!r}")


def _holds_string(value: Any) -> bool:
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "US"
    return isinstance(value, (list, tuple)) and any(_holds_string(v) for v in value)


def _bound(value: Any, shape: Shape, name: str, which: str) -> np.ndarray | None:
    """A bound given as a scalar or array -> a float64 array of the variable's shape."""
    if value is None:
        return None
    if isinstance(value, Expression):
        sense = ">=" if which == "lb" else "<="  # (ub= said "v >= expr": a reviewing helper)
        raise DSLError(
            f"Variable {name!r}: {which} must be numeric data, not the expression "
            f"{describe(value)}; write a constraint instead (e.g. {name} {sense} expr)"
        )
    if _requires_grad(value):
        sense = ">=" if which == "lb" else "<="
        raise _grad_refusal(
            value,
            f"Variable {name!r}: {which}",
            "a bound",
            f", write the bound as the constraint {name} {sense} p",
        )
    data = tensor_numpy(value, f"Variable {name!r}: {which}") if _is_torch_tensor(value) else value
    try:
        raw = np.asarray(data)
        real = raw.dtype.kind in "biuf" or (
            raw.dtype.kind == "O" and all(isinstance(v, numbers.Real) for v in raw.flat)
        )
        if not real:  # np.array("0.5", dtype=float) parses the string; complex drops .imag
            raise TypeError
        arr = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise DSLError(
            f"Variable {name!r}: {which} must be a real number or an array of them (numpy, "
            f"torch, nested lists), got {type(value).__name__} {reprlib.repr(value)}"
            + (" (strings are not parsed as numbers)" if _holds_string(value) else "")
        ) from None
    if np.isnan(arr).any():
        raise DSLError(f"Variable {name!r}: {which} (shape {arr.shape}) contains NaN")
    try:
        out = np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise DSLError(
            f"Variable {name!r}: {which} of shape {arr.shape} does not broadcast to the "
            f"variable's shape {shape}"
        ) from None
    if which == "lb" and np.isposinf(out).any():
        raise DSLError(f"Variable {name!r}: lb contains +inf, so no value is feasible")
    if which == "ub" and np.isneginf(out).any():
        raise DSLError(f"Variable {name!r}: ub contains -inf, so no value is feasible")
    infinite = np.isneginf(out) if which == "lb" else np.isposinf(out)
    if infinite.all():
        return None
    return out


# --------------------------------------------------------------------------------------------
# sign inference (expressions without variables)


def _infer_sign(op: str, args: tuple[Expression, ...], attrs: dict[str, Any]) -> str:
    if any(a.has_variables for a in args) or op == "variable":
        return UNKNOWN
    if op == "constant":
        v = attrs["value"]
        if v.size == 0 or not v.any():
            return ZERO
        if (v >= 0).all():
            return NONNEG
        if (v <= 0).all():
            return NONPOS
        return UNKNOWN
    if op == "parameter":
        return NONNEG if attrs.get("nonneg") else UNKNOWN
    signs = [a._sign for a in args]
    if op == "neg":
        return {NONNEG: NONPOS, NONPOS: NONNEG}.get(signs[0], signs[0])
    if op in ("add", "concatenate"):
        return _sign_join(signs)
    if op in ("mul", "matmul"):
        return _sign_product(signs[0], signs[1])
    if op == "div":
        return ZERO if signs[0] == ZERO else _sign_product(signs[0], signs[1])
    if op in ("sum", "transpose", "reshape", "index", "max", "min", "sum_largest"):
        return signs[0]
    if op in ("abs", "pos", "norm1"):
        return NONNEG
    if op == "maximum":
        if NONNEG in signs or ZERO in signs:
            return NONNEG if set(signs) != {ZERO} else ZERO
        return NONPOS if all(s == NONPOS for s in signs) else UNKNOWN
    if op == "minimum":
        if NONPOS in signs or ZERO in signs:
            return NONPOS if set(signs) != {ZERO} else ZERO
        return NONNEG if all(s == NONNEG for s in signs) else UNKNOWN
    return UNKNOWN


# --------------------------------------------------------------------------------------------
# operations


def _add(
    a: Expression,
    b: Expression,
    symbol: str,
    shown: tuple[Expression, Expression] | None = None,
) -> Expression:
    """``a + b``; ``shown`` are the operands as written (``x - y`` is built as ``x + (-y)``)."""
    left, right = shown if shown is not None else (a, b)
    where = Lazy(lambda: describe_binary(left, symbol, right))
    shape = broadcast_shape(where, left, right)
    return Expression("add", (a, b), shape, curvature=_join_curvature(where, (a, b)))


def _neg(a: Expression) -> Expression:
    return Expression("neg", (a,), a.shape, curvature=_flip(a.curvature))


def _check_linear(a: Expression, b: Expression, symbol: str) -> None:
    if a.has_variables and b.has_variables:
        raise DSLError(
            f"{describe_binary(a, symbol, b)}: both operands depend on variables — "
            f"{desc(a)} and {desc(b)} — so their product is not linear and the model would "
            "not be an LP. One factor must be built from parameters and constants only"
        )


def _product_curvature(op: str | Lazy, a: Expression, b: Expression) -> str:
    if not a.has_variables and not b.has_variables:
        if a.curvature != "constant" or b.curvature != "constant":
            raise AssertionError("an expression without variables must have constant curvature")
        return "constant"
    coef, expr = (b, a) if a.has_variables else (a, b)
    return _scaled_curvature(op, coef, expr)


def _mul(a: Expression, b: Expression) -> Expression:
    where = Lazy(lambda: describe_binary(a, "*", b))
    _check_linear(a, b, "*")
    shape = broadcast_shape(where, a, b)
    return Expression("mul", (a, b), shape, curvature=_product_curvature(where, a, b))


def _matmul(a: Expression, b: Expression) -> Expression:
    where = Lazy(lambda: describe_binary(a, "@", b))
    for x in (a, b):
        if x.ndim == 0:
            raise DSLError(
                f"{where}: matmul needs 1-D or 2-D operands, but {desc(x)} is a scalar; "
                "use * to scale by a scalar"
            )
        if x.ndim > 2:
            raise DSLError(
                f"{where}: matmul supports 1-D and 2-D operands only, but {desc(x)} has "
                f"{x.ndim} dimensions; reshape it first"
            )
    _check_linear(a, b, "@")
    k_a = a.shape[-1]
    k_b = b.shape[0]
    if k_a != k_b:
        raise DSLError(
            f"{where}: inner dimensions differ: {desc(a)} has {k_a} columns (last axis) but "
            f"{desc(b)} has {k_b} rows (first axis)"
        )
    shape = a.shape[:-1] + b.shape[1:]
    return Expression("matmul", (a, b), shape, curvature=_product_curvature(where, a, b))


def _div(a: Expression, b: Expression) -> Expression | Ratio:
    where = Lazy(lambda: describe_binary(a, "/", b))
    if b.has_variables:
        if b.shape != ():
            raise DSLError(
                f"{where}: the denominator {desc(b)} depends on variables and is not a scalar; "
                "only a scalar numerator divided by a scalar denominator (a linear-fractional "
                "objective) is allowed"
            )
        if a.shape != ():
            raise DSLError(
                f"{where}: dividing by the variable-dependent {desc(b)} makes a ratio, which "
                f"needs a scalar numerator, but {desc(a)} is not a scalar; sum it first or "
                "divide by a constant or parameter instead"
            )
        return Ratio(a, b)
    if b.op == "constant" and (b.attrs["value"] == 0).any():
        zeros = int((b.attrs["value"] == 0).sum())
        raise DSLError(
            f"{where}: division by zero: the constant denominator (shape {b.shape}) has "
            f"{zeros} zero entr{'y' if zeros == 1 else 'ies'}"
        )
    shape = broadcast_shape(where, a, b)
    if a.has_variables and a.curvature in ("convex", "concave"):
        curvature = _scaled_curvature(where, b, a)
    else:
        curvature = "affine" if a.has_variables else "constant"
    return Expression("div", (a, b), shape, curvature=curvature)


def normalize_axis(axis: Any, expr: Expression, who: str) -> int:
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise DSLError(
            f"{who}({describe(expr)}, axis={axis!r}): axis must be an int or None, "
            f"got {type(axis).__name__}"
        )
    ax = int(axis)
    if not -expr.ndim <= ax < expr.ndim:
        raise DSLError(
            f"{who}({describe(expr)}, axis={ax}): axis out of range for {desc(expr)} "
            f"(valid: {-expr.ndim}..{expr.ndim - 1})"
            if expr.ndim
            else f"{who}({describe(expr)}, axis={ax}): {describe(expr)} is a scalar (shape ()), "
            "which has no axes; use axis=None"
        )
    return ax % expr.ndim


def _resolve_reshape(expr: Expression, shape: Any) -> Shape:
    who = Lazy(lambda: f"reshape({describe(expr)})")
    if isinstance(shape, numbers.Integral) and not isinstance(shape, (bool, np.bool_)):
        shape = (int(shape),)
    try:
        dims = [
            int(d) if isinstance(d, numbers.Integral) and not isinstance(d, bool) else None
            for d in shape
        ]
    except TypeError:
        raise DSLError(f"{who}: shape must be an int or a tuple of ints, got {shape!r}") from None
    if any(d is None for d in dims):
        raise DSLError(f"{who}: shape must contain ints only, got {tuple(shape)!r}")
    unknown = [i for i, d in enumerate(dims) if d == -1]
    if len(unknown) > 1 or any(d < -1 for d in dims):
        raise DSLError(
            f"{who}: shape {tuple(dims)} is invalid: at most one dimension may be -1 and the "
            "others must be >= 0"
        )
    known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
    if unknown:
        if known == 0 or expr.size % known:
            raise DSLError(
                f"{who}: cannot reshape {desc(expr)} with {expr.size} entries into {tuple(dims)}"
            )
        dims[unknown[0]] = expr.size // known
    elif known != expr.size:
        raise DSLError(
            f"{who}: cannot reshape {desc(expr)} with {expr.size} entries into shape "
            f"{tuple(dims)} with {known} entries"
        )
    return tuple(dims)


def _convert_key_part(part: Any, expr: Expression) -> Any:
    if isinstance(part, (Expression, Ratio)):
        raise DSLError(
            f"{describe(expr)}[...]: an index must be fixed data (ints, slices, integer or "
            f"boolean arrays), not the expression {describe(part)}"
        )
    if _is_torch_tensor(part):
        return tensor_numpy(part, f"{describe(expr)}[...]")
    if isinstance(part, list):
        arr = np.asarray(part)
        # numpy reads an empty list as an empty integer index (np.arange(3)[[]] has shape
        # (0,)), but np.asarray([]) is float64, which numpy refuses as an index
        return arr.astype(np.intp) if arr.size == 0 and arr.dtype == np.float64 else arr
    return part


def _index(expr: Expression, key: Any) -> Expression:
    parts = key if isinstance(key, tuple) else (key,)
    np_key_parts = tuple(_convert_key_part(p, expr) for p in parts)
    np_key = np_key_parts if isinstance(key, tuple) else np_key_parts[0]
    grid = np.arange(expr.size, dtype=np.int64).reshape(expr.shape)
    try:
        flat = np.asarray(grid[np_key], dtype=np.int64)
    except (IndexError, TypeError, ValueError) as err:
        raise DSLError(
            f"{describe(expr)}[{_key_text(key)}]: invalid index for {desc(expr)}: {err}"
        ) from None
    flat = np.array(flat)  # own the data (grid views would keep the whole grid alive)
    flat.setflags(write=False)
    return Expression("index", (expr,), flat.shape, {"key": key, "flat": flat})


def _key_text(key: Any) -> str:
    from lpdsl.rendering import key_to_text

    return key_to_text(key)


def concatenate(exprs: Sequence[Any], axis: int = 0) -> Expression:
    """Join expressions along an existing axis (``np.concatenate``).

    Args:
        exprs: Expressions, arrays, tensors or numbers, all with the same number of dimensions
            and equal sizes except along ``axis``.
        axis: The joining axis (negative counts from the end).
    """
    if isinstance(exprs, (Expression, Ratio)) or not isinstance(exprs, (list, tuple)):
        raise DSLError(
            f"concatenate expects a list or tuple of expressions, got {type(exprs).__name__}"
        )
    if not exprs:
        raise DSLError("concatenate needs at least one expression, got an empty sequence")
    items = [as_expression(e, f"concatenate (item {i})") for i, e in enumerate(exprs)]
    return _join(items, axis, "concatenate", items)


def _join(items: list[Expression], axis: int, who: str, given: list[Expression]) -> Expression:
    """``items`` joined along ``axis``; messages name ``who`` (concatenate, hstack, vstack)
    and the items as the user gave them (``given``), not as hstack/vstack reshaped them."""
    first = items[0]
    if first.ndim == 0:
        raise DSLError(
            f"{who}: {desc(first)} is a scalar; scalars have no axis to join along "
            "(use hstack, which treats scalars as length-1 vectors)"
        )
    ax = normalize_axis(axis, first, who)
    for i, e in enumerate(items[1:], start=1):
        if e.ndim != first.ndim:
            raise DSLError(
                f"{who}: all items need the same number of dimensions, but item 0 "
                f"{desc(given[0])} has {given[0].ndim} and item {i} {desc(given[i])} has "
                f"{given[i].ndim}"
            )
        for d in range(first.ndim):
            if d != ax and e.shape[d] != first.shape[d]:
                if who == "concatenate":
                    misfit = f"along axis {ax}: item {i} {desc(e)} differs from item 0 "
                    misfit += f"{desc(first)} in axis {d}"
                else:  # the user's items, not the rows or columns they were reshaped to
                    misfit = f"item {i} {desc(given[i])} does not fit item 0 {desc(given[0])}"
                raise DSLError(f"{who} {misfit}; all axes but the joining one must match")
    if len(items) == 1:
        return first
    shape = list(first.shape)
    shape[ax] = sum(e.shape[ax] for e in items)
    return Expression("concatenate", items, tuple(shape), {"axis": ax})


def hstack(exprs: Sequence[Any]) -> Expression:
    """Stack horizontally, as ``np.hstack``: 1-D items (and scalars) join end to end, 2-D
    items side by side (along columns)."""
    given = _stack_items(exprs, "hstack")
    items = [e.reshape(1) if e.ndim == 0 else e for e in given]
    return _join(items, 0 if items[0].ndim == 1 else 1, "hstack", given)


def vstack(exprs: Sequence[Any]) -> Expression:
    """Stack vertically, as ``np.vstack``: 1-D items (length n) become rows ``(1, n)``."""
    given = _stack_items(exprs, "vstack")
    items = [
        e.reshape(1, -1) if e.ndim == 1 else (e.reshape(1, 1) if e.ndim == 0 else e) for e in given
    ]
    return _join(items, 0, "vstack", given)


def _stack_items(exprs: Any, who: str) -> list[Expression]:
    if isinstance(exprs, (Expression, Ratio)) or not isinstance(exprs, (list, tuple)):
        raise DSLError(
            f"{who} expects a list or tuple of expressions, got {type(exprs).__name__} "
            f"(write lp.{who}([a, b]))"
        )
    if not exprs:
        raise DSLError(f"{who} needs at least one expression, got an empty sequence")
    return [as_expression(e, f"{who} (item {i})") for i, e in enumerate(exprs)]


# --------------------------------------------------------------------------------------------
# ratio


class Ratio:
    """``num / den`` with a variable-dependent scalar ``den``: a linear-fractional objective.

    Not an :class:`Expression`: it is only valid as the whole argument of ``Minimize`` or
    ``Maximize`` (the compiler turns it into an LP by the Charnes–Cooper transform, which
    needs ``den > 0`` on the feasible set). Every operator on it raises :class:`DSLError`.

    Attributes:
        num: The scalar numerator (affine).
        den: The scalar denominator (affine, depends on variables).
    """

    __slots__ = ("den", "num")
    __array_ufunc__ = _array_ufunc
    __array_function__ = _array_function
    __array_priority__ = 1000
    __torch_function__ = classmethod(_torch_function)
    __hash__ = object.__hash__

    shape: ClassVar[Shape] = ()
    has_variables: ClassVar[bool] = True

    num: Expression
    den: Expression

    def __init__(self, num: Any, den: Any) -> None:
        num = as_expression(num, "Ratio numerator")
        den = as_expression(den, "Ratio denominator")
        for part, role in ((num, "numerator"), (den, "denominator")):
            if part.shape != ():
                raise DSLError(
                    f"ratio {describe_binary(num, '/', den)}: the {role} {desc(part)} must "
                    "be a scalar"
                )
            if part.curvature not in ("constant", "affine"):
                raise DSLError(
                    f"ratio {describe_binary(num, '/', den)}: the {role} {desc(part)} is "
                    f"{part.curvature}; a linear-fractional objective needs affine numerator "
                    "and denominator (piecewise-linear atoms are not allowed in a ratio)"
                )
        if not den.has_variables:
            raise DSLError(
                f"ratio {describe_binary(num, '/', den)}: the denominator has no variables; "
                "divide normally (num / den gives an affine expression)"
            )
        object.__setattr__(self, "num", num)
        object.__setattr__(self, "den", den)

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("a Ratio is immutable")

    __setstate__ = restore_slots

    @property
    def has_parameters(self) -> bool:
        """Whether the numerator or denominator depends on a parameter."""
        return self.num.has_parameters or self.den.has_parameters

    @property
    def curvature(self) -> str:
        """Always ``"ratio"``: linear-fractional, neither affine nor convex."""
        return "ratio"

    def __repr__(self) -> str:
        return f"Ratio({self})"

    def __str__(self) -> str:
        from lpdsl.rendering import to_text

        return to_text(self)

    def _misuse(self, *_: Any, **__: Any) -> Any:
        raise _ratio_misuse(self, "operation on a ratio")

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _misuse
    __matmul__ = __rmatmul__ = __truediv__ = __rtruediv__ = __pow__ = __rpow__ = _misuse
    __neg__ = __pos__ = __abs__ = __getitem__ = __iter__ = __len__ = _misuse
    __le__ = __ge__ = __lt__ = __gt__ = __eq__ = __ne__ = _misuse  # type: ignore[assignment]
    sum = reshape = _misuse

    @property
    def T(self) -> Any:
        """Raises: a ratio has no transpose (it is only valid as an objective)."""
        raise _ratio_misuse(self, "transpose of a ratio")

    def __bool__(self) -> bool:
        raise _ratio_misuse(self, "truth value of a ratio")


# --------------------------------------------------------------------------------------------
# traversal


def walk(
    roots: Sequence[Expression | Ratio], prune: Callable[[Any], bool] | None = None
) -> Iterator[Expression]:
    """Every distinct node below ``roots``, children before parents (post-order), once each;
    not below a node for which ``prune`` holds (it is yielded, its children are not).

    Iterative, so very deep trees (e.g. ``sum()`` of a long Python list) do not hit the
    recursion limit. A ratio root stands for its numerator and denominator. The compiler
    walks its own nodes (anything with ``args``) with it too.
    """
    seen: set[int] = set()
    stack: list[tuple[Expression, bool]] = []
    for root in reversed(list(roots)):
        if isinstance(root, Ratio):
            stack.append((root.den, False))
            stack.append((root.num, False))
        else:
            stack.append((root, False))
    while stack:
        node, expanded = stack.pop()
        if expanded:
            yield node
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if prune is not None and prune(node):
            continue
        for child in reversed(node.args):
            if id(child) not in seen:
                stack.append((child, False))
