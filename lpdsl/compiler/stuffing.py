"""Pass 6: stack every row template into one scatter (CVXPY's "matrix stuffing").

A :class:`CoefficientMap` turns row templates ``r_i(x) = M_i(θ) x + o_i(θ)`` over a fixed
column layout into the numbers ``M`` and ``o`` with **one** ``index_add`` per call. Every term
entry gets a *slot* in a flat output vector, precomputed here:

* sparse layout: ``[ nnz values of the first ``n_sparse`` rows | the other rows dense | o ]``,
  where the sparse rows' pattern is the set of unique ``(row, column)`` pairs of their terms
  (duplicates, e.g. ``x + x``, share a slot and are summed by the scatter);
* dense layout: ``[ all rows dense, row-major | o ]``.

Entries with constant coefficients are summed at compile time into a base vector; entries
with parameter factors are grouped by their factor nodes, so a call does, per group, one
gather per factor and one multiply, then a single scatter. Cost: linear in the number of
entries (plus the size of the dense output, if asked for).

A coefficient summed from several terms that cancel (``0.1 x + 0.2 x - 0.3 x``, or ``tot @ y
- a @ y - b @ y`` with ``tot = a + b``) keeps a residue of the sum's rounding, ~1e-17, and
the solver, which scales each row to unit norm, would read it as ``x == 0``. So a coefficient
of ``k`` terms is summed in float64 and is 0 where it lies within :func:`.nodes.allowance` of the
sum of its terms' magnitudes (the float64 sum's rounding bound plus half an ulp of the
values' dtype), as in exact arithmetic, keeping the sum's derivative; one above it keeps its
value (HiGHS drops coefficients below 1e-9 absolute). Constant sums are settled once
(:meth:`CoefficientMap.base`); sums with parameter terms at each call, on those coefficients
only (``_Cancelling``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lpdsl.compiler.evaluator import Evaluator
from lpdsl.compiler.nodes import (
    allowance,
    constant_sum,
    is_constant_sum,
    size,
    sum_counts,
    term_counts,
)
from lpdsl.compiler.templates import Template
from lpdsl.sparse import Pattern


@dataclass
class _Group:
    """Parameter-dependent entries sharing the same factor nodes."""

    nodes: tuple[Any, ...]
    idx: tuple[np.ndarray, ...]
    scale: np.ndarray
    slots: dict[str, np.ndarray]


@dataclass
class _Cancelling:
    """The coefficients of a layout summed from several terms, one of them a parameter's:
    their slots ``(U,)``, their constant terms' magnitudes and term counts ``(U,)``, and,
    for the parameter terms among them, their places in the call's term vector and the
    coefficient (``0..U-1``) each adds into."""

    slots: np.ndarray
    const_sum: np.ndarray
    const_mag: np.ndarray
    count: np.ndarray
    terms: np.ndarray
    into: np.ndarray
    _factors: dict[torch.dtype, np.ndarray] = field(default_factory=dict)

    def factor(self, data: torch.dtype) -> np.ndarray:
        """The allowance per unit of magnitude for values of dtype ``data`` (cached: the
        evaluator caches its tensor by the array's identity)."""
        if data not in self._factors:
            self._factors[data] = allowance(self.count, 1.0, data)
        return self._factors[data]


def _cancelling(
    slots: np.ndarray,
    const: np.ndarray,
    scale: np.ndarray,
    mag: np.ndarray,
    param_order: np.ndarray,
    counts: np.ndarray,
) -> _Cancelling | None:
    """The :class:`_Cancelling` of one layout from every term's ``slots``, whether it is
    constant, its constant ``scale`` and magnitude ``mag`` (a collapsed constant sum's terms'),
    and how many terms it stands for (``counts``: more than 1 for a coefficient
    ``templates.collapse`` summed); ``param_order`` lists the parameter
    terms in the order of the call's term vector. ``None`` where no coefficient has such a
    sum (an offset is one term: only coefficients of ``A`` and ``c`` have sums)."""
    uniq, where, terms_in = np.unique(slots, return_inverse=True, return_counts=True)
    count = sum_counts(where, counts, uniq.size)
    with_param = np.bincount(where, ~const, minlength=uniq.size) > 0
    keep = (terms_in > 1) & with_param
    if not keep.any():
        return None
    const_sum = np.bincount(where[const], scale[const], minlength=uniq.size)
    const_mag = np.bincount(where[const], mag[const], minlength=uniq.size)
    param_where = where[param_order]
    terms = np.nonzero(keep[param_where])[0]
    compact = np.cumsum(keep) - 1
    return _Cancelling(
        uniq[keep],
        const_sum[keep],
        const_mag[keep],
        count[keep].astype(np.float64),
        terms,
        compact[param_where[terms]],
    )


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def column_layout(variables: Sequence[Any]) -> tuple[dict[int, int], int]:
    """``{id(var): first column}`` and the number of columns, in the given order."""
    offsets: dict[int, int] = {}
    n = 0
    for v in variables:
        offsets[id(v)] = n
        n += size(v.shape)
    return offsets, n


class CoefficientMap:
    """``rows = M(θ) x + o(θ)`` for a list of row templates; see the module docstring.

    Args:
        rows: templates; their entries, flattened and concatenated, are the rows.
        variables: the column layout (every variable the templates use).
        evaluator: the model's parameter evaluator (shared caches).
        n_sparse: how many leading rows form the sparse part (the rest is always dense).
        offset_sign: per-template sign applied to the offsets ``o`` (``b = -offset``).
    """

    def __init__(
        self,
        rows: Sequence[Template],
        variables: Sequence[Any],
        evaluator: Evaluator,
        n_sparse: int,
        offset_sign: Sequence[float],
    ) -> None:
        self.evaluator = evaluator
        col_of, n = column_layout(variables)
        sizes = [t.size for t in rows]
        row0 = np.cumsum([0, *sizes])
        R = int(row0[-1])
        self.n_rows, self.n_cols, self.n_sparse = R, n, n_sparse

        # every entry as (row, col or -1 for an offset, scale, factor nodes, factor idx)
        e_row, e_col, e_scale, e_group, e_count, e_mag = [], [], [], [], [], []
        group_of: dict[tuple[int, ...], int] = {}
        group_nodes: list[tuple[Any, ...]] = []
        group_idx: list[list[list[np.ndarray]]] = []

        def add(rows_: np.ndarray, cols: np.ndarray, scale: np.ndarray, factors: Any) -> None:
            scale = np.asarray(scale, dtype=np.float64)
            mag, counts = np.abs(scale), term_counts(factors, rows_.size)
            if len(factors) == 1 and is_constant_sum(factors[0][0]):
                # a sum of constant terms (templates.collapse) is a constant: summed once, in
                # float64, into the base vector with its terms' magnitude and count (computed
                # at each call, in the values' dtype, it lost real differences in float32 and
                # cost L^3 products a call for A @ (B @ x): a verifying helper)
                value, inner, _ = constant_sum(factors[0][0])
                idx = factors[0][1]
                scale, mag, factors = scale * value[idx], mag * inner[idx], ()
            key = tuple(id(node) for node, _ in factors)
            g = group_of.get(key)
            if g is None:
                g = group_of[key] = len(group_nodes)
                group_nodes.append(tuple(node for node, _ in factors))
                group_idx.append([[] for _ in factors])
            for k, (_, idx) in enumerate(factors):
                group_idx[g][k].append(np.asarray(idx, dtype=np.int64))
            e_row.append(rows_)
            e_col.append(cols)
            e_scale.append(scale)
            e_group.append(np.full(rows_.size, g, dtype=np.int64))
            e_count.append(counts)
            e_mag.append(mag)

        for t, r0, sign in zip(rows, row0, offset_sign, strict=False):
            for b in t.blocks:
                add(r0 + b.out, col_of[id(b.var)] + b.vidx, b.scale, b.factors)
            if t.offset is None:
                continue
            off = t.offset
            ids = np.arange(t.size, dtype=np.int64)
            if off.op == "constant":
                value = np.broadcast_to(np.asarray(off.attrs["value"], np.float64), t.shape)
                value = sign * value.reshape(-1)
                keep = value != 0
                add(r0 + ids[keep], np.full(int(keep.sum()), -1), value[keep], ())
            else:
                add(r0 + ids, np.full(t.size, -1), np.full(t.size, float(sign)), ((off, ids),))

        row, col, group = _cat(e_row), _cat(e_col), _cat(e_group)
        scale = np.concatenate(e_scale) if e_scale else np.zeros(0)
        mag = np.concatenate(e_mag) if e_mag else np.zeros(0)
        counts = np.concatenate(e_count) if e_count else np.zeros(0)

        # the sparsity pattern of the first n_sparse rows: unique (row, col), row-major
        is_mat = col >= 0
        in_sparse = is_mat & (row < n_sparse)
        keys = row[in_sparse] * n + col[in_sparse]
        uniq, inverse = np.unique(keys, return_inverse=True)
        self.pattern = Pattern(
            torch.as_tensor(uniq // max(n, 1), dtype=torch.int64),
            torch.as_tensor(uniq % max(n, 1), dtype=torch.int64),
            (n_sparse, n),
        )
        nnz = int(uniq.size)
        n_dense_rest = (R - n_sparse) * n
        self.lengths = {"sparse": nnz + n_dense_rest + R, "dense": R * n + R}
        self.nnz = nnz
        slots = {"sparse": np.empty(row.size, np.int64), "dense": np.empty(row.size, np.int64)}
        slots["sparse"][in_sparse] = inverse.reshape(-1)
        rest = is_mat & ~in_sparse
        slots["sparse"][rest] = nnz + (row[rest] - n_sparse) * n + col[rest]
        slots["sparse"][~is_mat] = nnz + n_dense_rest + row[~is_mat]
        slots["dense"][is_mat] = row[is_mat] * n + col[is_mat]
        slots["dense"][~is_mat] = R * n + row[~is_mat]

        # constant entries -> base vectors (built per layout on first use: the dense one of a
        # large sparse model would be gigabytes); parameter entries -> groups
        const = group == group_of.get((), -1)
        self._const = {
            layout: (s[const], scale[const], mag[const], counts[const])
            for layout, s in slots.items()
        }
        self._base: dict[str, np.ndarray] = {}
        self._rounds: dict[tuple[str, torch.dtype], bool] = {}
        self.groups: list[_Group] = []
        for g, nodes_ in enumerate(group_nodes):
            if not nodes_:
                continue
            sel = group == g
            self.groups.append(
                _Group(
                    nodes_,
                    tuple(np.concatenate(parts) for parts in group_idx[g]),
                    scale[sel],
                    {layout: s[sel] for layout, s in slots.items()},
                )
            )
        # the parameter-only nodes a call must evaluate
        self.roots = [node for grp in self.groups for node in grp.nodes]
        # the flat index arrays of every group, concatenated (one scatter per call)
        self.slots = {
            layout: np.concatenate([grp.slots[layout] for grp in self.groups])
            if self.groups
            else np.zeros(0, np.int64)
            for layout in slots
        }
        # the entries of the groups' terms in the order assemble() concatenates them, and
        # every term's slot, constant flag and scale: for _cancelling, built per layout at
        # its first use (np.unique over the terms: compiling a 2000x100 parameter model took
        # 63 ms instead of 24 with both layouts built at once)
        param_order = _cat([np.nonzero(group == g)[0] for g, nd in enumerate(group_nodes) if nd])
        self._terms = (slots, const, scale, mag, param_order, counts)
        # whether a factor is a collapsed sum, whose terms' magnitude the test of sums that
        # cancel takes instead of its value's (templates.collapse)
        self._inner = any(n.op == "segment_sum" for grp in self.groups for n in grp.nodes)
        self._cancel: dict[str, _Cancelling | None] = {}
        # which of split()'s three parts any parameter reaches: the others are constants and
        # leave detached (the AUC model's A and c), so the solver differentiates only the rest
        self._live = {}
        for layout, sl in self.slots.items():
            head = nnz if layout == "sparse" else n_sparse * n
            start = self.lengths[layout] - R  # the offsets
            self._live[layout] = (
                bool((sl < head).any()),
                bool(((sl >= head) & (sl < start)).any()),
                bool((sl >= start).any()),
            )

    def _cancelling(self, layout: str) -> _Cancelling | None:
        """The layout's :class:`_Cancelling` (cached)."""
        if layout not in self._cancel:
            slots, const, scale, mag, param_order, counts = self._terms
            self._cancel[layout] = _cancelling(
                slots[layout], const, scale, mag, param_order, counts
            )
        return self._cancel[layout]

    def base(self, layout: str) -> np.ndarray:
        """The flat output of ``layout`` with only the constant coefficients filled in; a sum
        of constant terms within its rounding of 0 is 0 (see the module docstring)."""
        if layout not in self._base:
            slots, scale, terms_mag, terms_count = self._const[layout]
            n = self.lengths[layout]
            out = np.bincount(slots, scale, minlength=n)
            uniq, where = np.unique(slots, return_inverse=True)
            mag = np.bincount(where, terms_mag, minlength=uniq.size)
            count = sum_counts(where, terms_count, uniq.size)
            sums = out[uniq]
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, refused by the caller
                residue = np.abs(sums) < allowance(count, mag, None)  # an inf sum is kept
            out[uniq[residue]] = 0.0
            self._base[layout] = out
        return self._base[layout]

    def assemble(
        self,
        values: dict[int, torch.Tensor],
        batch: tuple[int, ...],
        layout: str,
        dtype: torch.dtype,
        device: torch.device,
        wide: torch.dtype,
        data: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, bool]:
        """The flat output ``(*batch, L)`` of one layout in ``dtype``, given evaluated
        parameter nodes, its parameter-dependent coefficients computed in ``wide`` (the
        ``values``' dtype) and rounded once; and whether that rounding, or that
        of the constant coefficients, made a nonzero coefficient 0 (checked on the
        coefficients only, not on the layout's zeros: cheap in the dense layout too).
        ``data``: the parameter values' dtype, whose rounding a cancelling sum's allowance
        includes (default ``dtype``)."""
        data = dtype if data is None else data
        ev = self.evaluator
        nb = len(batch)
        base = ev.constant(self.base(layout), dtype, device)
        lost = dtype != wide and self._base_rounds_to_zero(layout, dtype)
        parts, mags = [], []
        for grp in self.groups:
            # a collapsed sum among the factors: its terms' magnitude, uncapped (one level)
            factors = zip(grp.nodes, grp.idx, strict=True)
            cap = False if self._inner else None
            v, m = ev.products(values, grp.scale, factors, nb, device, wide, cap)
            parts.append(v.expand((*batch, v.shape[-1])))
            mags.append(None if m is None else m.expand((*batch, m.shape[-1])))
        full = base.expand((*batch, base.shape[-1]))
        if not parts:
            return full.clone(), lost
        src_w = torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]
        src = src_w.to(dtype)
        if dtype != wide:
            lost = lost or bool(((src == 0.0) & (src_w != 0.0)).any())
        out = full.index_add(-1, ev.index(self.slots[layout], device), src)
        cancel = self._cancelling(layout)
        if cancel is None:
            return out, lost
        # these coefficients again, summed in ``wide`` and rounded once (in float32 a sum of
        # 40,000 terms kept its ~1e-5 accuracy only so): zero where within the rounding
        where, into = ev.index(cancel.slots, device), ev.index(cancel.into, device)
        terms = src_w[..., ev.index(cancel.terms, device)]
        shape = (*batch, cancel.slots.size)
        coef = ev.constant(cancel.const_sum, wide, device).expand(shape).index_add(-1, into, terms)
        mag = ev.constant(cancel.const_mag, wide, device).expand(shape)
        if self._inner:
            mag_w = torch.cat(mags, dim=-1) if len(mags) > 1 else mags[0]
            mag = mag.index_add(-1, into, mag_w[..., ev.index(cancel.terms, device)])
        else:
            mag = mag.index_add(-1, into, terms.detach().abs())
        # strictly below: an inf sum (allowance inf) is kept for the caller to refuse
        gone = coef.detach().abs() < ev.constant(cancel.factor(data), wide, device) * mag
        # 0 in value, the sum's derivative kept: with zero-initialised weights w, w.x has the
        # coefficient 0 and its derivative is still that of the sum (cut, d obj/dw was 0)
        coef = coef - coef.detach() * gone
        return out.index_copy_(-1, where, coef.to(dtype)), lost

    def _base_rounds_to_zero(self, layout: str, dtype: torch.dtype) -> bool:
        """Whether ``dtype`` rounds a nonzero constant coefficient to 0 (cached)."""
        key = (layout, dtype)
        if key not in self._rounds:
            info = torch.finfo(dtype)
            values = np.abs(self.base(layout))
            self._rounds[key] = bool(((values > 0.0) & (values <= info.tiny * info.eps / 2)).any())
        return self._rounds[key]

    def split(
        self, flat: torch.Tensor, layout: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(M_sparse_part, M_rest (*B, R - n_sparse, n), o (*B, R))`` from the flat output.

        ``M_sparse_part`` is the ``(*B, nnz)`` values in the sparse layout and the dense
        ``(*B, n_sparse, n)`` block in the dense layout. A part no parameter enters is
        detached (its gradient is zero).
        """
        R, n, ms = self.n_rows, self.n_cols, self.n_sparse
        batch = flat.shape[:-1]
        if layout == "sparse":
            head = flat[..., : self.nnz]
            start = self.nnz
        else:
            head = flat[..., : ms * n].reshape((*batch, ms, n))
            start = ms * n
        rest = flat[..., start : start + (R - ms) * n].reshape((*batch, R - ms, n))
        offsets = flat[..., start + (R - ms) * n :]
        parts = (head, rest, offsets)
        return tuple(  # type: ignore[return-value]
            t if live else t.detach() for t, live in zip(parts, self._live[layout], strict=True)
        )
