"""Affine templates: the coefficient maps of an expression that is affine in the variables.

CVXPY stores the problem data of a DPP program as ``vec([A b c]) = T @ [θ; 1]`` (one sparse
tensor, ``cone_matrix_stuffing.py``). lpdsl allows products of parameters and division by
parameter expressions (SPEC §1, more than DPP), so a coefficient is not linear in θ; it is a
*monomial* in evaluated parameter subtrees. A :class:`Template` of an expression of shape
``S`` is therefore

* a list of term :class:`Block` s: numpy arrays ``out`` (flat output entry), ``vidx`` (flat
  entry of the variable ``var``), ``scale`` (constants folded in, zeros dropped so identity
  and sparse structure survive), and ``factors``: pairs ``(param_node, idx)`` meaning the
  coefficient of entry ``e`` is ``scale[e] * prod_k flat(eval(param_node_k))[idx_k[e]]``;
* an ``offset``: a parameter-only node of shape ``S`` (or ``None``).

Every operation on templates is a numpy index computation done once at compile time:
broadcast, index, reshape, transpose and concatenate map ``out`` through a gather map;
``sum`` maps ``out`` many-to-one; multiplying by a parameter expression appends a factor.
At call time only the factor gathers and one scatter remain (:mod:`.stuffing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lpdsl.compiler import nodes
from lpdsl.compiler.nodes import Node, size
from lpdsl.errors import DSLError
from lpdsl.expressions import walk

Factor = tuple[Any, np.ndarray]


@dataclass
class Block:
    """Entries ``coef[e] * var.flat[vidx[e]]`` contributing to output entry ``out[e]``."""

    out: np.ndarray
    var: Any
    vidx: np.ndarray
    scale: np.ndarray
    factors: tuple[Factor, ...] = ()

    def take(self, sel: np.ndarray) -> Block:
        """The entries ``sel`` (an index array or boolean mask)."""
        return Block(
            self.out[sel],
            self.var,
            self.vidx[sel],
            self.scale[sel],
            tuple((node, idx[sel]) for node, idx in self.factors),
        )

    @property
    def signature(self) -> tuple[int, ...]:
        """Blocks with equal signatures can be concatenated (same variable and factor nodes)."""
        return (id(self.var), *(id(node) for node, _ in self.factors))


@dataclass
class Template:
    """An affine expression of ``shape``: ``sum(blocks) + offset``."""

    shape: tuple[int, ...]
    blocks: list[Block] = field(default_factory=list)
    offset: Any = None

    @property
    def size(self) -> int:
        return size(self.shape)


# ------------------------------------------------------------------------------ primitives


def merge(blocks: Sequence[Block]) -> list[Block]:
    """Concatenate blocks of equal signature (keeps the block count small)."""
    groups: dict[tuple[int, ...], list[Block]] = {}
    for b in blocks:
        if b.out.size:
            groups.setdefault(b.signature, []).append(b)
    merged = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        first = group[0]
        merged.append(
            Block(
                np.concatenate([b.out for b in group]),
                first.var,
                np.concatenate([b.vidx for b in group]),
                np.concatenate([b.scale for b in group]),
                tuple(
                    (node, np.concatenate([b.factors[k][1] for b in group]))
                    for k, (node, _) in enumerate(first.factors)
                ),
            )
        )
    return merged


def remap(t: Template, src: np.ndarray, shape: tuple[int, ...]) -> Template:
    """Gather: output entry ``o`` of the result is entry ``src[o]`` of ``t``.

    One input entry may feed many outputs (broadcast) or none (indexing). Blocks are mapped by
    inverting ``src`` with a stable argsort: each term entry is repeated once per output that
    reads it (``np.repeat``), with no loop over entries.
    """
    src = np.asarray(src, dtype=np.int64).reshape(-1)
    n_in = t.size
    offset = None if t.offset is None else nodes.gather(t.offset, src, shape)
    if src.size == n_in and np.array_equal(src, np.arange(n_in)):
        return Template(tuple(shape), list(t.blocks), offset)
    order = np.argsort(src, kind="stable")
    counts = np.bincount(src, minlength=n_in)
    starts = np.cumsum(counts) - counts
    blocks = []
    for b in t.blocks:
        rep = counts[b.out]
        total = int(rep.sum())
        if total == 0:
            continue
        ends = np.cumsum(rep)
        entry = np.repeat(np.arange(b.out.size), rep)
        within = np.arange(total) - np.repeat(ends - rep, rep)
        nb = b.take(entry)
        nb.out = order[starts[b.out][entry] + within]
        blocks.append(nb)
    return Template(tuple(shape), blocks, offset)


def reduce(t: Template, dst: np.ndarray, shape: tuple[int, ...], offset: Any) -> Template:
    """Sum: input entry ``i`` of ``t`` adds into output entry ``dst[i]``; ``offset`` given."""
    blocks = []
    for b in t.blocks:
        nb = b.take(slice(None))
        nb.out = dst[b.out]
        blocks.append(nb)
    return Template(tuple(shape), blocks, offset)


def scale_by(t: Template, coef: Any, coef_idx: np.ndarray) -> Template:
    """Multiply output entry ``o`` by ``flat(coef)[coef_idx[o]]`` (``coef`` parameter-only).

    A constant coefficient folds into ``scale`` and drops exact zeros; a parameter coefficient
    becomes one more factor. The offset is left to the caller (it depends on the operation).
    """
    blocks = []
    if coef.op == "constant":
        flat = np.asarray(coef.attrs["value"], dtype=np.float64).reshape(-1)
        for b in t.blocks:
            with np.errstate(over="ignore"):  # an inf is refused, with its row, when the
                s = b.scale * flat[coef_idx[b.out]]  # standard form is made (compiled.py)
            keep = s != 0
            nb = b.take(keep)
            nb.scale = s[keep]
            if nb.out.size:
                blocks.append(nb)
    else:
        for b in t.blocks:
            blocks.append(
                Block(b.out, b.var, b.vidx, b.scale, (*b.factors, (coef, coef_idx[b.out])))
            )
    return Template(t.shape, blocks, None)


#: :func:`collapse` sums a template's parameter terms per coefficient where they number more
#: than this many times their coefficients, or where an entry carries this many factors.
COLLAPSE_RATIO = 2
COLLAPSE_FACTORS = 3


def collapse(t: Template) -> Template:
    """``t`` with its parameter terms summed per coefficient: one entry per (output entry,
    variable entry), whose single factor is a parameter node evaluated at call time
    (``segment_sum`` of the products of the terms it had; the sum's rounding of 0 is 0, and
    its terms' magnitude and count reach the standard form's test of sums that cancel, as
    the terms themselves did: docs/compiler.md, "Sums that cancel").

    Nested products of parameters multiply the terms: ``A @ (A @ x)`` repeats every term of
    ``A @ x`` once per entry of ``A``'s inner dimension, so the coefficient ``(A^(T-1) B)_ij``
    of a condensed dynamics ``s = A @ s + B @ u[t]`` was ``4^(T-1)`` terms (T = 9: 1.4 GB at
    compile time, 200 ms per call; T = 20 ran out of memory), and a discount chain ``e = q *
    e + x[i]`` carried factor tuples as long as the chain (n = 300: 371 ms per call). A
    reviewing helper's probes, eighteenth pass. Constant terms repeat the same way and are
    summed the same way, apart (a ``segment_sum`` without parameters, which the standard form
    folds once into its constants: ``nodes.constant_sum``): a numpy ``A`` in that dynamics
    was ``4^T`` terms in ``scale`` (T = 11: 11 s to compile, 2.9 GB, 290 ms a call; a
    reviewing helper's probes, nineteenth pass). Templates whose terms do not repeat, as the
    metric models', are left as they are."""
    params = [b for b in t.blocks if b.factors]
    consts = [b for b in t.blocks if not b.factors]

    def crowded(blocks: list[Block]) -> bool:
        """More than COLLAPSE_RATIO entries per output entry: only then are the repeats
        counted (np.unique costs compile time on every product node)."""
        return sum(b.out.size for b in blocks) > COLLAPSE_RATIO * max(t.size, 1)

    deep = bool(params) and max(len(b.factors) for b in params) >= 2
    out_params = _collapsed(params) if deep or crowded(params) else None
    out_consts = _collapsed(consts) if crowded(consts) else None
    if out_params is None and out_consts is None:
        return t
    blocks = [*(params if out_params is None else out_params)]
    blocks += consts if out_consts is None else out_consts
    return Template(t.shape, merge(blocks), t.offset)


def _collapsed(terms: list[Block]) -> list[Block] | None:
    """:func:`collapse` of ``terms`` (all with factors, or all without), or ``None`` where
    they do not repeat enough and carry fewer than ``COLLAPSE_FACTORS`` factors."""
    by_var: dict[int, list[Block]] = {}
    for b in terms:
        by_var.setdefault(id(b.var), []).append(b)
    keys, total = {}, 0
    for v, blocks in by_var.items():
        n_var = size(blocks[0].var.shape)
        keys[v] = np.unique(
            np.concatenate([b.out * n_var + b.vidx for b in blocks]), return_inverse=True
        )
        total += keys[v][0].size
    entries = sum(b.out.size for b in terms)
    deepest = max(len(b.factors) for b in terms)
    if entries <= COLLAPSE_RATIO * total and deepest < COLLAPSE_FACTORS:
        return None
    kept = []
    for v, blocks in by_var.items():
        var = blocks[0].var
        n_var = size(var.shape)
        pairs, seg = keys[v]
        args: list[Any] = []  # the factor nodes of every block, each once
        place: dict[int, int] = {}  # (by id: a scan of args per factor was quadratic)
        terms, start = [], 0
        for b in blocks:
            e = b.out.size
            factors = []
            for node, idx in b.factors:
                if id(node) not in place:
                    place[id(node)] = len(args)
                    args.append(node)
                factors.append((place[id(node)], idx))
            terms.append((b.scale, tuple(factors), seg[start : start + e]))
            start += e
        counts = np.concatenate(
            [nodes.term_counts([(args[k], idx) for k, idx in f], sc.size) for sc, f, _ in terms]
        )
        attrs = {"terms": tuple((sc, f) for sc, f, _ in terms), "seg": seg, "allow": {}}
        attrs["count"] = nodes.sum_counts(seg, counts, pairs.size)
        coef = Node("segment_sum", tuple(args), (pairs.size,), attrs)
        unit = np.ones(pairs.size)
        kept.append(
            Block(pairs // n_var, var, pairs % n_var, unit, ((coef, np.arange(pairs.size)),))
        )
    return kept


def negate(t: Template) -> Template:
    """``-t``."""
    blocks = [Block(b.out, b.var, b.vidx, -b.scale, b.factors) for b in t.blocks]
    return Template(t.shape, blocks, None if t.offset is None else nodes.neg(t.offset))


def add(a: Template, b: Template, shape: tuple[int, ...]) -> Template:
    """``a + b`` broadcast to ``shape``."""
    a = broadcast(a, shape)
    b = broadcast(b, shape)
    if a.offset is None:
        offset = b.offset
    elif b.offset is None:
        offset = a.offset
    else:
        offset = nodes.add(a.offset, b.offset)
    return Template(tuple(shape), merge([*a.blocks, *b.blocks]), offset)


def broadcast(t: Template, shape: tuple[int, ...]) -> Template:
    """``t`` broadcast to ``shape`` (numpy rules)."""
    if tuple(t.shape) == tuple(shape):
        return t
    return remap(t, nodes.broadcast_map(t.shape, shape), shape)


def constant_template(node: Any) -> Template:
    """The template of a parameter-only (or constant) node: no terms, offset = the node."""
    return Template(tuple(node.shape), [], node)


def variable_template(var: Any) -> Template:
    """The identity template of a variable leaf."""
    n = size(var.shape)
    idx = np.arange(n, dtype=np.int64)
    return Template(tuple(var.shape), [Block(idx, var, idx.copy(), np.ones(n))], None)


# ------------------------------------------------------------------------------ builder


def _sum_map(shape: tuple[int, ...], axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    if axis is None:
        return np.zeros(size(shape), dtype=np.int64), ()
    out_shape = shape[:axis] + shape[axis + 1 :]
    ids = np.arange(size(out_shape), dtype=np.int64).reshape(out_shape)
    dst = np.broadcast_to(np.expand_dims(ids, axis), shape).reshape(-1)
    return np.ascontiguousarray(dst), out_shape


def _matmul(node: Any, ta: Template | None, tb: Template | None) -> Template:
    """``a @ b`` with one side affine in variables and the other parameter-only.

    Expands the variable side into the product space ``(M, K, P)`` (a gather), multiplies by the
    parameter side's entry at each position (a factor, or a folded constant) and sums over K.
    The entries created are exactly the nonzeros of the resulting coefficient matrix.
    """
    a, b = node.args
    a2d = len(a.shape) == 2
    b2d = len(b.shape) == 2
    M = a.shape[0] if a2d else 1
    K = a.shape[-1]
    P = b.shape[1] if b2d else 1
    ia = np.arange(size(a.shape), dtype=np.int64).reshape(M, K)
    ib = np.arange(size(b.shape), dtype=np.int64).reshape(K, P)
    space = (M, K, P)
    a_src = np.broadcast_to(ia[:, :, None], space).reshape(-1)
    b_src = np.broadcast_to(ib[None, :, :], space).reshape(-1)
    dst = np.broadcast_to(np.arange(M * P, dtype=np.int64).reshape(M, 1, P), space).reshape(-1)
    shape = tuple(node.shape)
    if ta is not None:  # variables on the left: coefficients from b
        expanded = remap(ta, a_src, space)
        scaled = scale_by(expanded, b, b_src)
        offset = None if ta.offset is None else Node("matmul", (ta.offset, b), shape)
    else:
        expanded = remap(tb, b_src, space)
        scaled = scale_by(expanded, a, a_src)
        offset = None if tb.offset is None else Node("matmul", (a, tb.offset), shape)
    return collapse(reduce(scaled, np.ascontiguousarray(dst), shape, offset))


def _concatenate(node: Any, temps: list[Template]) -> Template:
    axis = node.attrs["axis"]
    bases = np.cumsum([0] + [t.size for t in temps])
    ids = np.concatenate(
        [np.arange(b0, b0 + t.size).reshape(t.shape) for b0, t in zip(bases, temps, strict=False)],
        axis=axis,
    ).reshape(-1)
    pos = np.empty(ids.size, dtype=np.int64)
    pos[ids] = np.arange(ids.size)
    blocks = []
    for b0, t in zip(bases, temps, strict=False):
        local = pos[b0 : b0 + t.size]
        for b in t.blocks:
            nb = b.take(slice(None))
            nb.out = local[b.out]
            blocks.append(nb)
    offset = None
    if any(t.offset is not None for t in temps):
        parts = [
            t.offset if t.offset is not None else nodes.constant(np.zeros(t.shape)) for t in temps
        ]
        offset = Node("concatenate", parts, node.shape, {"axis": axis})
    return Template(tuple(node.shape), merge(blocks), offset)


def build(root: Any, memo: dict[int, Template]) -> Template:
    """The template of an affine expression tree (atoms already eliminated).

    Args:
        root: an expression (declared nodes and compiler nodes may mix).
        memo: ``{id(node): Template}`` shared across calls, so shared subtrees are built once.
    """
    for node in walk([root]):
        if id(node) in memo:
            continue
        memo[id(node)] = _build_node(node, memo)
    return memo[id(root)]


def _build_node(node: Any, memo: dict[int, Template]) -> Template:
    if not node.has_variables:
        return constant_template(node)
    op = node.op
    shape = tuple(node.shape)
    args = node.args
    if op == "variable":
        return variable_template(node)
    if op == "add":
        return add(memo[id(args[0])], memo[id(args[1])], shape)
    if op == "neg":
        return negate(memo[id(args[0])])
    if op in ("mul", "div"):
        var_side, coef = (args[0], args[1]) if args[0].has_variables else (args[1], args[0])
        if coef.has_variables:
            raise DSLError(
                f"internal: {op} of two variable-dependent operands reached the compiler"
            )
        if op == "div":
            if coef.op == "constant":
                with np.errstate(over="ignore", divide="ignore"):  # as in scale_by
                    coef = nodes.constant(1.0 / np.asarray(coef.attrs["value"], np.float64))
            else:
                coef = Node("recip", (coef,), coef.shape)
        t = broadcast(memo[id(var_side)], shape)
        out = scale_by(t, coef, nodes.broadcast_map(tuple(coef.shape), shape))
        if t.offset is not None:
            out.offset = Node("mul", (t.offset, coef), shape)
        return collapse(out)
    if op == "matmul":
        ta = memo[id(args[0])] if args[0].has_variables else None
        tb = memo[id(args[1])] if args[1].has_variables else None
        return _matmul(node, ta, tb)
    if op == "sum":
        t = memo[id(args[0])]
        dst, out_shape = _sum_map(t.shape, node.attrs.get("axis"))
        offset = None if t.offset is None else Node("sum", (t.offset,), out_shape, dict(node.attrs))
        return reduce(t, dst, out_shape, offset)
    if op == "transpose":
        t = memo[id(args[0])]
        src = np.arange(t.size, dtype=np.int64).reshape(t.shape).T.reshape(-1)
        return remap(t, src, shape)
    if op == "reshape":
        t = memo[id(args[0])]
        offset = None if t.offset is None else Node("reshape", (t.offset,), shape, {"shape": shape})
        return Template(shape, list(t.blocks), offset)
    if op in ("index", "gather"):
        return remap(memo[id(args[0])], node.attrs["flat"].reshape(-1), shape)
    if op == "concatenate":
        return _concatenate(node, [memo[id(a)] for a in args])
    raise DSLError(
        f"internal: the compiler cannot build coefficient maps for operation {op!r} "
        "(piecewise-linear atoms should have been eliminated first)"
    )
