"""Compiler-internal expression nodes.

The passes read the declared tree through the fields of docs/architecture.md only (``op``,
``args``, ``shape``, ``attrs``, ``name``, ``has_variables``, ``has_parameters``) and build
new nodes of their own with :class:`Node`, which has the same fields. So a rewritten tree may
mix the user's nodes and compiler nodes, and nothing here calls the declaration layer's
constructors (whose checks and global counters belong to the user's model, not to ours).

Besides the declared ops, compiler nodes use three more, all parameter-only:

* ``gather`` (``attrs["flat"]``: int64 array of the node's shape): ``flat(a)[flat]``; it
  expresses broadcast, index, transpose and concatenate of parameter data as one gather.
* ``recip``: ``1 / a``, checked for zeros at call time (division by a parameter expression).
* ``concatenate`` of parameter-only operands, as declared.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lpdsl.expressions import walk

_aux_counter = itertools.count()


class Node:
    """A node built by the compiler; duck-types the declared ``Expression`` fields."""

    __slots__ = ("args", "attrs", "has_parameters", "has_variables", "id", "name", "op", "shape")

    def __init__(
        self,
        op: str,
        args: Sequence[Any] = (),
        shape: tuple[int, ...] = (),
        attrs: dict[str, Any] | None = None,
        name: str = "",
    ) -> None:
        self.op = op
        self.args = tuple(args)
        self.shape = tuple(int(s) for s in shape)
        self.attrs = dict(attrs or {})
        self.name = name
        self.id = -1
        self.has_variables = op == "variable" or any(a.has_variables for a in self.args)
        self.has_parameters = op == "parameter" or any(a.has_parameters for a in self.args)

    def __repr__(self) -> str:
        if self.name:
            return f"{self.name}{list(self.shape)}"
        return f"{self.op}({', '.join(map(repr, self.args))})"


def aux_variable(shape: tuple[int, ...], purpose: str, lb: float | None = None) -> Node:
    """A new auxiliary (epigraph) variable; ``lb`` an optional scalar lower bound.

    Auxiliary variables are columns of the standard form that ``recover`` drops.
    """
    node = Node("variable", (), shape, name=f"_{purpose}{next(_aux_counter)}")
    node.attrs["lb"] = None if lb is None else np.full(shape, float(lb))
    node.attrs["ub"] = None
    return node


def constant(value: Any) -> Node:
    """A constant leaf holding a float64 array."""
    arr = np.asarray(value, dtype=np.float64)
    return Node("constant", (), arr.shape, {"value": arr})


def size(shape: tuple[int, ...]) -> int:
    """Number of entries of ``shape`` (1 for a scalar)."""
    return int(np.prod(shape, dtype=np.int64))


def broadcast_map(src_shape: tuple[int, ...], dst_shape: tuple[int, ...]) -> np.ndarray:
    """Flat index into ``src_shape`` of every entry of ``src`` broadcast to ``dst_shape``."""
    src = np.arange(size(src_shape), dtype=np.int64).reshape(src_shape)
    return np.ascontiguousarray(np.broadcast_to(src, dst_shape)).reshape(-1)


def gather(node: Any, flat: np.ndarray, shape: tuple[int, ...]) -> Any:
    """``flat(node)[flat]`` reshaped to ``shape``, skipping identity gathers."""
    flat = np.asarray(flat, dtype=np.int64).reshape(-1)
    if tuple(node.shape) == tuple(shape) and np.array_equal(flat, np.arange(flat.size)):
        return node
    if node.op == "constant":
        return constant(node.attrs["value"].reshape(-1)[flat].reshape(shape))
    return Node("gather", (node,), shape, {"flat": flat.reshape(shape)})


def broadcast_to(node: Any, shape: tuple[int, ...]) -> Any:
    """``node`` broadcast to ``shape`` (numpy rules) as a gather node."""
    if tuple(node.shape) == tuple(shape):
        return node
    return gather(node, broadcast_map(tuple(node.shape), shape), shape)


def add(a: Any, b: Any) -> Node:
    """``a + b`` with numpy broadcasting."""
    return Node("add", (a, b), np.broadcast_shapes(tuple(a.shape), tuple(b.shape)))


def neg(a: Any) -> Node:
    """``-a``."""
    return Node("neg", (a,), a.shape)


def sub(a: Any, b: Any) -> Node:
    """``a - b`` with numpy broadcasting."""
    return add(a, neg(b))


def term_counts(factors: Sequence[tuple[Any, np.ndarray]], n: int) -> np.ndarray:
    """How many terms of the expanded products each of ``n`` entries stands for: 1, plus
    ``count - 1`` for each factor ``(node, idx)`` that is itself a ``segment_sum`` (gathered
    at ``idx``): the rounding allowance of a sum grows with its terms (``templates.collapse``)."""
    out = np.ones(n)
    for node, idx in factors:
        if getattr(node, "op", None) == "segment_sum":
            out = out + node.attrs["count"][idx] - 1.0
    return out


def allowance(count: Any, mag: Any, data: torch.dtype | None) -> Any:
    """How far from 0 a sum of ``count`` terms of magnitude ``mag`` (summed in float64) is
    rounding: ``(count - 1) eps`` of it, plus half an ulp of the data's dtype (``data``;
    ``None``: float64, constants), whose rounding of the inputs (``tot = a + b`` in float32)
    the sum carries too. Not ``(count - 1)`` ulps of a float32 sum: that worst case grows
    like ``count^2`` against a typical ``sqrt(count)``, and zeroed accurate float32 sums of
    40,000 terms (a reviewing helper)."""
    eps = np.finfo(np.float64).eps
    unit = eps / 2 if data is None else torch.finfo(data).eps / 2
    return ((count - 1) * eps + unit) * mag


def constant_sum(node: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``segment_sum`` of constants (``templates.collapse`` of constant terms, at any depth
    of nesting: :func:`is_constant_sum`): its value, its terms' magnitude and its one-level
    magnitude (its terms' absolute values), in float64, computed once (cached in its attrs;
    the nested sums first, bottom-up without recursion: ``s = A @ s`` repeated 2,000 times
    recursed too deep). Each term is its scale times its factors' values, its magnitude the
    scale times theirs, a nested sum's as :func:`inner_cap` caps it. A sum within its rounding
    of 0 (:func:`allowance`, float64's unit: no data's rounding in constants) is 0, as the
    standard form's sums of constants are."""
    if "folded" not in node.attrs:
        for inner in walk([node], prune=lambda n: "folded" in n.attrs):
            if is_constant_sum(inner) and "folded" not in inner.attrs:
                inner.attrs["folded"] = _fold(inner)
    return node.attrs["folded"]


def inner_cap(mag: Any, one: Any, count: Any, value: Any, xp: Any = np) -> Any:
    """The magnitude a nested sum brings to a further sum's test of sums that cancel: its
    terms' magnitude ``mag``, capped at ``max(count |value|, one)``. Carried whole along a
    chain it is the expanded products' (``|A|^k |B|``), which grows like ``rho(|A|)^k`` where
    the values grow like ``rho(A)^k``: a rotation's condensed dynamics zeroed coefficients of
    0.707 at T = 120 (a verifying helper's probe), while each step's rounding stays near
    ``count eps |value|``, or near ``eps`` times its one-level magnitude ``one`` (its terms'
    absolute values) where it cancels: capped at ``count |value|`` alone, a sum that
    cancelled (to 0, or nearly) passed almost nothing on, and ``C @ (A @ (B @ x)) - D @ x``
    with ``A B`` ~ 0 kept a residue of 1e-18 of the outer sum, read as a cut (-20 for -40:
    verifying helpers, nineteenth pass). ``xp``: numpy or torch."""
    return xp.minimum(mag, xp.maximum(count * xp.abs(value), one))


def _fold(node: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`constant_sum` of ``node`` whose nested sums are folded already."""
    args = []
    for a in node.args:  # (value, magnitude, one-level magnitude, count or None), flat
        if is_constant_sum(a):
            args.append((*a.attrs["folded"], a.attrs["count"]))
        else:  # a constant, or an expression of constants (c * 0.5: KeyError 'folded' here,
            # a fuzzing helper's model, twentieth pass), one term
            v = _constant_value(a)
            args.append((v, np.abs(v), None, None))
    prods, mags = [], []
    for scale, factors in node.attrs["terms"]:
        p = np.asarray(scale, np.float64).copy()
        m = np.abs(p)
        for k, idx in factors:
            value, mag, one, count = args[k]
            v = value[idx]
            p = p * v
            m = m * (np.abs(v) if count is None else inner_cap(mag[idx], one[idx], count[idx], v))
        prods.append(p)
        mags.append(m)
    n = node.shape[0]
    seg = node.attrs["seg"]
    prod = np.concatenate(prods)
    value = np.bincount(seg, prod, minlength=n)
    mag = np.bincount(seg, np.concatenate(mags), minlength=n)
    one = np.bincount(seg, np.abs(prod), minlength=n)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, refused later
        value[np.abs(value) < allowance(node.attrs["count"], mag, None)] = 0.0
    return value, mag, one


def _constant_value(node: Any) -> np.ndarray:
    """The flat float64 value of a node without parameters (a constant, or an expression of
    constants such as ``c * 0.5``, evaluated as the standard form's evaluator would)."""
    if node.op == "constant":
        return np.broadcast_to(np.asarray(node.attrs["value"], np.float64), node.shape).ravel()
    from lpdsl.compiler.evaluator import Evaluator  # (it imports this module)

    cpu = torch.device("cpu")
    value = Evaluator([]).run([node], [], 0, torch.float64, cpu)[id(node)]
    return value.detach().numpy().reshape(-1).astype(np.float64)


def is_constant_sum(node: Any) -> bool:
    """Whether ``node`` is a ``segment_sum`` of constants only: no parameter below it (its
    factors, if any, are constants or such sums)."""
    return getattr(node, "op", None) == "segment_sum" and not node.has_parameters


def sum_counts(seg: np.ndarray, counts: np.ndarray, size_: int) -> np.ndarray:
    """The count (as :func:`allowance` takes it) of each of ``size_`` sums whose terms
    ``counts`` add into ``seg``: ``n - 1`` roundings of the sum's own, after the worst of its
    terms' (a sum's rounding bound is ``(n - 1) eps`` of its terms' magnitude, and each term
    carries its own bound relative to its magnitude; they add, they do not multiply: a
    product of counts grew like ``4^T`` along a condensed dynamics and zeroed its
    coefficients)."""
    n = np.bincount(seg, minlength=size_).astype(np.float64)
    worst = np.zeros(size_)
    np.maximum.at(worst, seg, counts)
    return n - 1.0 + worst
