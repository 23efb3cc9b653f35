"""Constraint operators and the structured solves of the generalized Hessian.

Every linear system the Newton backend meets has the form

    (A^T diag(w) A + shift * I) u = r,

with nonnegative row weights ``w`` (the active-row indicator times the squared row scaling
during the Newton iterations, the active-set indicator during recovery). The paper (§3.1,
eq. 7) writes it densely; most of the models of ``lpdsl.metrics`` have an ``A`` that is almost
empty, so the operators here pick a method from the sparsity pattern (exact, except ``"cg"``):

* ``"dense"``: an ``(m, n)`` tensor; the Hessian is formed with one batched matmul and
  factorised by Cholesky.
* ``"diagonal"``: a :class:`~lpdsl.sparse.SparseMatrix` whose rows have at most one nonzero
  (the AUC model, eq. 2); the Hessian is diagonal and the solve is a division.
* ``"arrow"``: a sparse ``A`` whose Hessian is an arrowhead, a diagonal plus a few dense rows
  and columns plus a low-rank term (the F-score model, §2.4: ``t`` meets every row); solved
  through the diagonal block by Schur complements (Woodbury), below a batch size by dense
  Cholesky.
* ``"pairs"``: other sparse ``A`` with moderate ``n``; the Hessian is assembled from the
  products of nonzeros that share a row (``index_add`` over a precomputed pair list) and
  factorised by Cholesky.
* ``"cg"``: a large sparse ``A``; matrix-free conjugate gradients on Hessian-vector products
  with a block-Jacobi preconditioner (Cholesky of the diagonal 64 x 64 column blocks),
  differentiated implicitly by :class:`_CGSolve`.

All of them run unchanged on CPU and CUDA and are differentiable in ``A`` and ``r`` (the
recovery of :mod:`lpdsl.diff.active` relies on it).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch

from lpdsl.errors import DSLError
from lpdsl.sparse import Pattern, SparseMatrix, gather_last, per_pattern
from lpdsl.validation import wide_float

#: Above this many variables a sparse, non-diagonal model is solved by CG instead of Cholesky
#: (CG on the nearly singular Hessians of degenerate LPs is slow to converge: NMF at s = 28,
#: n = 784, took 27 s by CG and 18 s by Cholesky; at s = 32, n = 1024, CG ended MAX_ITER and
#: Cholesky solved it in 47 s). Raised from 1024 in the thirteenth pass: NMF s = 40 (n =
#: 1,600) 118.7 s by CG, 71.3 s by Cholesky; a random sparse LP of 5,200 x 1,100, 381 Newton
#: steps, 182 s by CG, 9.2 s by Cholesky; at s = 64 (n = 4,096) CG took 317 s (146 s with
#: the inexact Newton directions of NEWTON_CG_RTOL) and Cholesky had not finished after 11 min.
DENSE_HESSIAN_MAX_N = 2048
#: ... and a batch whose dense Hessians would exceed this many entries falls back to CG.
PAIRS_MAX_ENTRIES = 1 << 27
#: From this many items on, a SparseOperator's products run batch-last: ``index_select`` and
#: ``index_add_`` along dim 0 move whole rows of the batch, where ``gather`` and ``index_add_``
#: along the last dim move one entry at a time; with the transposes this was ~20 % faster
#: at 64 items (64 F-score LPs of n = 64: ~130 -> ~100 us a product), slower below ~28 (the
#: per-row overhead). Both sum a row's products in the nonzeros' order: bit-identical.
BATCH_LAST_MIN = 32
#: Above this many row-sharing nonzero pairs the pair assembly is not attempted.
MAX_PAIRS = 4_000_000
#: Rows with more nonzeros than this enter the Hessian as a dense slab (one batched matmul).
HEAVY_ROW_NNZ = 16
#: A dense ``A`` with at most this fraction of nonzeros is handled as a SparseMatrix.
SPARSE_DENSITY = 0.05
#: At most this many border columns / heavy rows for the bordered-diagonal ("arrow") solver.
MAX_BORDER = 8
#: Below this ``batch * n^3`` the arrow pattern is solved by dense Cholesky instead: the
#: structured solve takes ~5x more (tiny) torch operations, which dominate small problems.
#: Measured on F-score patterns (factorisation + 1 or 7 solves): n = 65 breaks even at a
#: batch of 6-12 (k n^3 = 1.6e6-3.3e6); at 16 the arrow is 1.5-2x, at 32 2.7-5x faster.
ARROW_MIN_WORK = 2.5e6
#: Relative residual of the CG path's solves (recovery, certificate, derivatives) ...
CG_RTOL = 1e-12
#: ... and of its Newton directions (inexact Newton: the exact line search takes the step).
#: At 1e-4 a random sparse LP of 5,200 x 1,100 took the same 381 Newton steps in 89.8 s
#: instead of 182 s, and NMF s = 48 (n = 2,304) 111 s instead of 267; at 1e-2 NMF took 53 s
#: but the sparse LP ended MAX_ITER (more, poorer steps).
NEWTON_CG_RTOL = 1e-4
#: Column block size of the CG path's block-Jacobi preconditioner.
BLOCK_SIZE = 64
#: Largest block-Jacobi slab / factor (entries over the batch); above it CG uses Jacobi.
BLOCK_MAX_ENTRIES = 1 << 25
#: A separable pattern's rows are padded to its longest column; above this many times the
#: rows and columns, the line search treats the variables jointly instead.
SEPARABLE_PADDING = 4


class Solver(Protocol):
    """``r -> (A^T diag(w) A + shift I)^{-1} r`` for a batch of right-hand sides ``(k, n)``.

    ``exact``: the solve inverts ``A^T W A`` exactly on its range (no shift bias for the
    recovery's refinement to remove, ``diff/active.py``)."""

    exact: bool

    def __call__(self, r: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class _PatternInfo:
    kind: str  # "diagonal", "arrow", "pairs" or "cg"
    k1: torch.Tensor | None = None  # pair list: nonzero indices sharing a light row
    k2: torch.Tensor | None = None
    flat: torch.Tensor | None = None  # cols[k1] * n + cols[k2]
    k1_row: torch.Tensor | None = None  # rows[k1] (where the pairs' weights are)
    heavy_k: torch.Tensor | None = None  # nonzeros in heavy (dense-ish) rows
    heavy_k_row: torch.Tensor | None = None  # their rows (where their weights are)
    heavy_flat: torch.Tensor | None = None  # their slot in the (n_heavy, n) slab
    heavy_ids: torch.Tensor | None = None  # the heavy rows
    n_heavy: int = 0
    arrow: _Arrow | None = None  # set when kind == "arrow"
    #: every row has exactly one nonzero (the AUC model): ``rows`` is ``arange(m)`` and
    #: ``A y`` needs no scatter
    one_per_row: bool = False
    #: at least as many nonzeros as rows and columns together (see SparseOperator._batch_last)
    many_nonzeros: bool = False
    #: rows with two or more nonzeros, ``(m,)`` bool (None for a diagonal pattern)
    multi_rows: torch.Tensor | None = None
    #: a diagonal pattern's rows by column, ``(n, w)`` padded with ``m``, and each row's
    #: column ``(m,)``: the penalty is a sum of one-variable terms (see ``Separable``)
    separable: Separable | None = None
    #: index vectors of this pattern expanded to a batch size, by (id, size): see
    #: :meth:`SparseOperator.gather`
    expanded: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Separable:
    """The rows of each variable when every row has at most one nonzero.

    The exterior penalty is then a sum of one-variable piecewise quadratics, and the line
    search minimises each exactly along its own step (``docs/solver.md`` §2).
    """

    col_rows: torch.Tensor  # (n, w) rows of each column, padded with m (no row)
    row_col: torch.Tensor  # (m,) each row's column (0 for an empty row)
    #: the rows slot by slot, ``col_rows.T`` as ``(1, w n)`` (the line search's layout), or
    #: ``None`` where that is ``0..m-1`` (every column has ``w`` rows, listed slot by slot: the
    #: AUC model's ``[-I; -I]``), so that the layout is a view of the rows
    slots: torch.Tensor | None


def rows_by_slot(col_rows: torch.Tensor, m: int) -> torch.Tensor | None:
    """:attr:`Separable.slots` of ``col_rows`` ``(n, w)`` over ``m`` rows."""
    slots = col_rows.T.reshape(1, -1)
    if slots.shape[1] == m and torch.equal(slots[0], torch.arange(m, device=slots.device)):
        return None
    return slots


@dataclass(frozen=True)
class _Arrow:
    """Index data of a bordered-diagonal Hessian (see :func:`_arrow_solver`).

    The blocks ``d``, ``E`` and ``F`` of a factorisation are sums of products of nonzeros
    times row weights, all scattered into one flat buffer: one gather, one product and one
    ``index_add`` a Newton step where there were three of each.
    """

    nl: int  # number of light columns (with a diagonal block)
    p: int  # number of border columns
    order: torch.Tensor  # (n,) the light columns, then the border columns
    inv_order: torch.Tensor  # position of every column in ``order``
    d_k: torch.Tensor  # nonzeros (light row, light col) -> diagonal
    e_k1: torch.Tensor  # pairs (light-col nnz, heavy-col nnz) in one light row -> E
    e_k2: torch.Tensor
    f_k1: torch.Tensor  # pairs of heavy-col nnz in one light row -> F
    f_k2: torch.Tensor
    k_row: torch.Tensor  # the row (weight) of every product: d, E, then F
    slot: torch.Tensor  # its slot in the flat (d, E, F) buffer
    size: int  # the buffer's length


@per_pattern
def _analyse(pattern: Pattern) -> _PatternInfo:
    """Classify a pattern: its kind and the index data of its Hessian."""
    m, n = pattern.shape
    rows = pattern.rows
    counts = torch.bincount(rows, minlength=m)
    if pattern.nnz == 0 or int(counts.max()) <= 1:
        info = _PatternInfo("diagonal", one_per_row=pattern.nnz == m, separable=_separable(pattern))
    else:
        heavy = counts > HEAVY_ROW_NNZ
        light_counts = torch.where(heavy, 0, counts)
        n_pairs = int((light_counts * light_counts).sum())
        # Heavy rows (e.g. F-score's normalisation row): a dense slab and one matmul.
        heavy_k = heavy[rows].nonzero().squeeze(1)
        heavy_local = (torch.cumsum(heavy.long(), 0) - 1)[rows[heavy_k]]
        # The arrow solve is O(n) per item at any n: detect it before the size limits.
        arrow = _arrow_info(pattern, heavy)
        k1 = k2 = flat = k1_row = None
        if n <= DENSE_HESSIAN_MAX_N and n_pairs <= MAX_PAIRS:
            # Light rows: products of nonzeros sharing a row, scattered into a dense H.
            starts = torch.cumsum(counts, 0) - counts
            per_k = light_counts[rows]
            k1 = torch.repeat_interleave(torch.arange(pattern.nnz, device=rows.device), per_k)
            first = torch.cumsum(per_k, 0) - per_k
            offset = torch.arange(k1.numel(), device=rows.device) - first[k1]
            k2 = starts[rows[k1]] + offset
            flat = pattern.cols[k1] * n + pattern.cols[k2]
            k1_row = rows[k1]
        kind = "arrow" if arrow is not None else "pairs" if k1 is not None else "cg"
        info = _PatternInfo(
            kind,
            k1,
            k2,
            flat,
            k1_row,
            heavy_k,
            rows[heavy_k],
            heavy_local * n + pattern.cols[heavy_k],
            heavy.nonzero().squeeze(1),
            int(heavy.sum()),
            arrow,
            multi_rows=counts >= 2,
            many_nonzeros=pattern.nnz >= m + n,
        )
    return info


def _separable(pattern: Pattern) -> Separable | None:
    """The rows of each column of a pattern with at most one nonzero per row, or ``None``
    when padding them to the longest column would cost more than ``SEPARABLE_PADDING``
    times the rows and columns (one variable bounded by most of the rows)."""
    (m, n), rows, cols = pattern.shape, pattern.rows, pattern.cols
    if pattern.nnz == 0:
        return None
    per_col = torch.bincount(cols, minlength=n)
    w = int(per_col.max())
    if n * w > SEPARABLE_PADDING * (m + n):
        return None
    order = torch.argsort(cols, stable=True)
    start = torch.cumsum(per_col, 0) - per_col
    slot = torch.arange(pattern.nnz, device=rows.device) - start[cols[order]]
    col_rows = torch.full((n, w), m, dtype=torch.long, device=rows.device)
    col_rows[cols[order], slot] = rows[order]
    row_col = torch.zeros(m, dtype=torch.long, device=rows.device)
    row_col[rows] = cols
    return Separable(col_rows, row_col, rows_by_slot(col_rows, m))


def _arrow_info(pattern: Pattern, heavy_row: torch.Tensor) -> _Arrow | None:
    """Detect ``H = bordered diagonal + low rank`` (F-score's arrowhead), else ``None``.

    Columns met by many light rows are border ("heavy") columns; if then every light row has at
    most one other ("light") column and there are few heavy rows and columns, the light rows
    give a diagonal block bordered by ``p`` columns and the heavy rows a rank-``h`` term.
    """
    m, n = pattern.shape
    rows, cols = pattern.rows, pattern.cols
    in_light = ~heavy_row[rows]
    col_count = torch.bincount(cols[in_light], minlength=n)
    heavy_col = col_count > HEAVY_ROW_NNZ
    p, h = int(heavy_col.sum()), int(heavy_row.sum())
    if p > MAX_BORDER or h > MAX_BORDER or p == n:
        return None
    is_lightcol = in_light & ~heavy_col[cols]
    if int(torch.bincount(rows[is_lightcol], minlength=m).max()) > 1:
        return None
    light_cols = (~heavy_col).nonzero().squeeze(1)
    heavy_cols = heavy_col.nonzero().squeeze(1)
    pos = torch.full((n,), -1, dtype=torch.long, device=rows.device)
    pos[light_cols] = torch.arange(light_cols.numel(), device=rows.device)
    pos[heavy_cols] = torch.arange(p, device=rows.device)
    d_k = is_lightcol.nonzero().squeeze(1)
    hv_k = (in_light & heavy_col[cols]).nonzero().squeeze(1)
    # E: the light-col nonzero of a row with each heavy-col nonzero of the same row
    row_light_k = torch.full((m,), -1, dtype=torch.long, device=rows.device)
    row_light_k[rows[d_k]] = d_k
    partner = row_light_k[rows[hv_k]]
    has = partner >= 0
    e_k1, e_k2 = partner[has], hv_k[has]
    e_flat = pos[cols[e_k1]] * p + pos[cols[e_k2]]
    # F: heavy-col nonzeros pairwise within each light row (p is small)
    r_h = rows[hv_k]
    same = r_h[:, None] == r_h[None, :]
    i1, i2 = same.nonzero(as_tuple=True)
    f_k1, f_k2 = hv_k[i1], hv_k[i2]
    f_flat = pos[cols[f_k1]] * p + pos[cols[f_k2]]
    order = torch.cat([light_cols, heavy_cols])
    inv_order = torch.empty_like(order)
    inv_order[order] = torch.arange(order.numel(), device=order.device)
    nl = light_cols.numel()
    # the flat buffer: d (nl), E (nl, p), F (p, p)
    o_e, o_f = nl, nl + nl * p
    k_row = torch.cat([rows[d_k], rows[e_k1], rows[f_k1]])
    slot = torch.cat([pos[cols[d_k]], o_e + e_flat, o_f + f_flat])
    return _Arrow(
        nl,
        p,
        order,
        inv_order,
        d_k,
        e_k1,
        e_k2,
        f_k1,
        f_k2,
        k_row,
        slot,
        o_f + p * p,
    )


def _arrow_solver(op: SparseOperator, w: torch.Tensor, shift: float) -> Solver:
    """Solve with ``H = B + S^T S``: ``B`` bordered diagonal, ``S`` the weighted heavy rows.

    ``B = [[diag(d), E], [E^T, F]]`` (light columns first) is inverted through the Schur
    complement ``C = F - E^T diag(d)^{-1} E = L_C L_C^T`` (``p x p``):
    ``B^{-1} = diag(d^{-1}, 0) + V_1 V_1^T`` with ``V_1 = [-diag(d)^{-1} E; I] L_C^{-T}``; the
    heavy rows by Woodbury, ``H^{-1} = B^{-1} - V_2 V_2^T`` with ``V_2 = Z L_M^{-T}``,
    ``Z = B^{-1} S^T`` and ``L_M`` the factor of ``I + S Z`` (``n x h``). So
    ``H^{-1} = diag(d^{-1}, 0) + V_1 V_1^T - V_2 V_2^T``: an application is a diagonal product
    and two thin products (four operations, where solving with the factors took fourteen,
    among them two ``cholesky_solve`` of their tiny blocks and two permutations: ~220 -> ~60
    µs on a batch of 64 F-score LPs of n = 64). Cost per item ``O(n (p + h)^2)`` instead of a
    dense ``O(n^3)`` Cholesky; differentiable throughout.
    """
    a = op.info.arrow
    prods, slab = op.arrow_products  # in float64 for lower precisions (_wide)
    w = w.to(prods.dtype)
    k = max(w.shape[0], prods.shape[0])
    nl, p, h, n = a.nl, a.p, op.info.n_heavy, op.n
    g = op.gather(w, a.k_row) * prods
    flat = g.new_zeros((k, a.size)).index_add_(1, a.slot, g.expand(k, -1))
    o_f = nl + nl * p
    d = flat[:, :nl] + shift
    E = flat[:, nl:o_f].view(k, nl, p)
    F = flat[:, o_f:].view(k, p, p)
    dinv = 1.0 / d
    DE = dinv.unsqueeze(-1) * E
    C = F - E.transpose(1, 2) @ DE
    C.diagonal(dim1=-2, dim2=-1).add_(shift)
    # the diagonal part and V_1, from the (light, border) order back to the columns' own
    dpad = torch.cat([dinv, dinv.new_zeros((k, p))], 1).index_select(1, a.inv_order)
    if p:
        # C is a difference of terms of the size of F: its rounding is relative to F (float32:
        # the border diagonal of F-score n = 256 is ~100, C ~ 1e-7 and came out negative)
        LC = cholesky(C, F.diagonal(dim1=-2, dim2=-1).abs().amax(-1))
        eye = torch.eye(p, dtype=DE.dtype, device=DE.device).expand(k, p, p)
        G = torch.cat([-DE, eye], 1).index_select(1, a.inv_order)
        V = _solve_lower(LC, G)  # V_1 = G L_C^{-T}
    else:
        V = dpad.new_zeros((k, n, 0))
    Vs = V  # V with the sign of its columns' term: H^{-1} = diag(dpad) + V Vs^T
    if h:  # the weighted heavy rows S = sqrt(W_H) A_H
        S = gather_last(w, op.info.heavy_ids).sqrt().unsqueeze(-1) * slab
        St = S.transpose(1, 2)
        Z = dpad.unsqueeze(-1) * St + V @ (V.transpose(1, 2) @ St)
        M = S @ Z
        M.diagonal(dim1=-2, dim2=-1).add_(1.0)
        V2 = _solve_lower(cholesky(M), Z)  # Z L_M^{-T}
        V, Vs = torch.cat([V, V2], -1), torch.cat([V, -V2], -1)
    apply = functools.partial(_arrow_apply, dtype=op.values.dtype)
    return BatchedSolver(apply, dpad, V, Vs)


def _solve_lower(L: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``X L^{-T}`` for a batch of lower-triangular ``L`` ``(k, p, p)`` and ``X`` ``(k, n, p)``
    (the transpose of ``L^{-1} X^T``)."""
    return torch.linalg.solve_triangular(L, X.transpose(1, 2), upper=False).transpose(1, 2)


def _wide(t: torch.Tensor) -> torch.dtype:
    """The dtype of the arrow solver's factors for data ``t``: float64 below it (not on MPS,
    which has none).

    The Schur complement ``C = F - E^T D^-1 E`` cancels: on a saturated F-score batch (n =
    256) ``F`` is ~100 and ``C`` ~1e-7, below float32's rounding of ``F``, and so is the
    right-hand side ``X_H - E^T D^-1 X_L`` of every application. In float32 the recovered
    point missed its rows by 0.26 (scaled units) at every eps and each such batch ended
    MAX_ITER from n = 192 on (below that the dense Cholesky of ``ARROW_MIN_WORK`` serves); a
    reviewing helper's probe, thirteenth pass. The solver is ``O(n (p + h)^2)`` per item, a
    small part of a step, so it runs in float64 and casts its results back. The products of
    nonzeros it scatters are formed in float64 too: rounded to float32 one by one they do not
    make a Gram matrix, and its Schur complement came out negative by more than the fallback
    shift of :func:`cholesky` (float64's, relative 1e-10) restores."""
    return wide_float(t.dtype, t.device)


def _arrow_apply(
    r: torch.Tensor, dpad: torch.Tensor, V: torch.Tensor, Vs: torch.Tensor, *, dtype: torch.dtype
) -> torch.Tensor:
    """``H^{-1} r = dpad r + V Vs^T r`` (:func:`_arrow_solver`), computed in the factors' dtype
    and returned in ``dtype`` (:func:`_wide`); ``Vs^T r`` as a row times ``Vs`` (the fast
    batched product, see :class:`_RowTimesAT`)."""
    r = r.to(dpad.dtype)
    t = torch.bmm(r.unsqueeze(1), Vs)
    return (dpad * r + torch.bmm(t, V.transpose(1, 2)).squeeze(1)).to(dtype)


class BatchedSolver:
    """Factorised systems, one per item: call it to solve, ``take`` to keep some items.

    ``fn(r, *parts)`` solves with the per-item tensors ``parts`` (batch dimension first, or
    ``None``); ``take`` lets the Newton driver reuse a factorisation after items have left.
    ``exact``: the solve inverts ``A^T W A`` exactly on its range, the shift entering only
    where the system is singular (a diagonal one), so the recovery needs no refinement.
    """

    def __init__(
        self, fn: Callable[..., torch.Tensor], *parts: torch.Tensor | None, exact: bool = False
    ) -> None:
        self.fn, self.parts, self.exact = fn, parts, exact

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.fn(r, *self.parts)

    def take(self, idx: torch.Tensor) -> BatchedSolver:
        parts = (p if p is None else p[idx] for p in self.parts)
        return BatchedSolver(self.fn, *parts, exact=self.exact)

    def clone(self) -> BatchedSolver:
        """A copy with its own tensors (out of inference mode, they can enter autograd)."""
        parts = (p if p is None else p.clone() for p in self.parts)
        return BatchedSolver(self.fn, *parts, exact=self.exact)


def _max_nonzeros(w: torch.Tensor) -> int:
    """The largest number of nonzero entries in a row of ``w`` ``(k, m)``."""
    return int((w != 0.0).sum(-1).max()) if w.numel() else 0


def _max_nonzeros_of(*ws: torch.Tensor) -> list[int]:
    """:func:`_max_nonzeros` of each of several weights of one shape, in one synchronisation."""
    if not ws[0].numel():
        return [0] * len(ws)
    return (torch.stack(ws) != 0.0).sum(-1).amax(-1).tolist()


def _cholesky_apply(r: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    return torch.cholesky_solve(r.unsqueeze(-1), L).squeeze(-1)


def _diagonal_apply(r: torch.Tensor, diag: torch.Tensor) -> torch.Tensor:
    return r / diag


class _RowTimesAT(torch.autograd.Function):
    """``A y`` per item as a row times ``A^T`` (the fast batched gemv), differentiated with
    ``grad_A = g y^T`` formed in ``A``'s own layout. Autograd's rule for the transposed
    product forms ``y g^T`` and adds its transpose into ``A``'s gradient: for a 64 x 400 x 40
    batch that backward took 3.4 ms against 0.7 ms (docs/solver.md §7). Its forward and
    backward are plain batched products, which torch vmaps itself (``jacrev`` of the dual, or
    ``jacrev(jacrev)``, w.r.t. a batched A: "does not have vmap support" before)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        return torch.bmm(y.unsqueeze(1), A.mT).squeeze(1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        y, A = ctx.saved_tensors
        gy = torch.bmm(g.unsqueeze(1), A).squeeze(1) if ctx.needs_input_grad[0] else None
        gA = torch.bmm(g.unsqueeze(-1), y.unsqueeze(1)) if ctx.needs_input_grad[1] else None
        return gy, gA


class DenseOperator:
    """A dense constraint matrix ``(N, m, n)`` with ``N`` the batch size or 1 (shared)."""

    kind = "dense"
    separable = None  # a dense A is not searched per variable

    def __init__(self, A: torch.Tensor) -> None:
        self.A = A
        self.m, self.n = A.shape[-2:]
        # views of A and shift matrices made once per operator (see _view, _shift)
        self._kept: dict[str, torch.Tensor] = {}

    def _view(self, name: str) -> torch.Tensor:
        """``A[0]`` (``"0"``), ``A[0]^T`` (``"0T"``) or ``A^T`` per item (``"mT"``), kept once
        made where ``A`` needs no gradient: one solve multiplies by the same operator ~50
        times, and making a view is a dispatched operation or two each time. A view made
        where autograd is off would not carry ``A``'s gradient, so one of an ``A`` that needs
        one is made at each use."""
        view = self._kept.get(name)
        if view is None:
            if name == "0T":
                view = self._view("0").T
            elif name == "0":
                view = self.A[0]
            else:
                view = self.A.mT
            if not self.A.requires_grad:
                self._kept[name] = view
        return view

    @property
    def shared(self) -> bool:
        return self.A.shape[0] == 1

    def take(self, idx: torch.Tensor) -> DenseOperator:
        return self if self.shared else DenseOperator(self.A[idx])

    def to(self, dtype: torch.dtype) -> DenseOperator:
        return DenseOperator(self.A.to(dtype))

    def detach(self) -> DenseOperator:
        return DenseOperator(self.A.detach())

    def scaled(self, D: torch.Tensor) -> DenseOperator:
        """The operator of ``diag(D) A`` (``D`` of shape ``(k or 1, m)``)."""
        return DenseOperator(self.A * D.unsqueeze(-1))

    def col_scaled(self, S: torch.Tensor) -> DenseOperator:
        """The operator of ``A diag(S)`` (``S`` of shape ``(k or 1, n)``)."""
        return DenseOperator(self.A * S.unsqueeze(-2))

    def multi_entry_rows(self) -> torch.Tensor | None:
        """Rows with two or more nonzeros, ``(k, m)`` bool."""
        return (self.A != 0.0).sum(-1) >= 2

    def matvec(self, y: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return y @ self._view("0T")
        if torch.is_grad_enabled() and (self.A.requires_grad or y.requires_grad):
            return _RowTimesAT.apply(y, self.A)
        # a row times A^T: MKL's batched gemv is 4-5x faster this way round than A @ column
        return torch.bmm(y.unsqueeze(1), self._view("mT")).squeeze(1)

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        if self.shared:
            return r @ self._view("0")
        return torch.bmm(r.unsqueeze(-2), self.A).squeeze(-2)

    def row_sq_norms(self) -> torch.Tensor:
        return (self.A * self.A).sum(-1)

    def row_abs_max(self) -> torch.Tensor:
        """``max_j |A_ij|`` per row, ``(k, m)``."""
        return self.A.abs().amax(-1)

    @functools.cached_property
    def _abs(self) -> DenseOperator:
        """The operator of ``|A|``, made at its first use and kept (one more copy of ``A``
        while the operator lives): the certificate's primal allowance multiplies by it at
        every attempt on the same items (bench_statuses seed 0: 455 products, 283 builds of
        ``|A|`` instead of 455)."""
        return DenseOperator(self.A.abs())

    def abs_matvec(self, z: torch.Tensor) -> torch.Tensor:
        """``|A| z`` ``(k, m)``: for ``z = |x|``, the size of each row's terms at ``x``."""
        return self._abs.matvec(z)

    def row_terms(
        self, x: torch.Tensor, x_abs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``A x`` and the size of each row's terms ``|A| |x|`` (``x_abs``: ``|x|``, where the
        caller has it)."""
        return self.matvec(x), self.abs_matvec(x.abs() if x_abs is None else x_abs)

    def abs_rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        """``|A|^T r`` ``(k, n)``: for ``r >= 0``, the size of each column's terms in ``A^T r``."""
        return self._abs.rmatvec(r)

    def col_abs_max(self) -> torch.Tensor:
        """``max_i |A_ij|`` per column, ``(k, n)``: the scale of column ``j``'s terms."""
        return self.A.abs().amax(-2)

    def gram(
        self, w: torch.Tensor, count: int | None = None, b: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``A^T diag(w) A`` for weights ``w`` of shape ``(k, m)``: ``(k, n, n)``.

        Weights may be negative (an update of a gram matrix, see :meth:`newton_solver`);
        ``count`` is the largest number of nonzero weights of an item, if known. With ``b``
        ``(k, m)`` also ``A^T diag(w) b`` ``(k, n)``, from the same rows."""
        k = max(w.shape[0], self.A.shape[0])
        if count is None:
            count = _max_nonzeros(w)
        if not 0 < count <= self.m // 2:
            Aw = self.A * w.unsqueeze(-1)
            A = self.A if self.A.shape[0] == k else self.A.expand(k, -1, -1)
            H = Aw.transpose(-1, -2) @ A
            return H if b is None else (H, torch.bmm(b.unsqueeze(1), Aw).squeeze(1))
        # only the weighted (violated, or changed) rows contribute
        rows = torch.topk(w.abs(), count, dim=-1, sorted=False).indices
        if self.shared:
            Ar = self._view("0")[rows]
        else:  # rows of the flattened batch: a contiguous index_select, 6x a gather
            flat = rows + (torch.arange(k, device=rows.device) * self.m).unsqueeze(-1)
            Ar = self.A.reshape(k * self.m, self.n).index_select(0, flat.view(-1))
            Ar = Ar.view(k, count, self.n)
        Aw = Ar * w.gather(-1, rows).unsqueeze(-1)
        H = Aw.transpose(-1, -2) @ Ar
        return H if b is None else (H, torch.bmm(b.gather(-1, rows).unsqueeze(1), Aw).squeeze(1))

    def hessian_solver(self, w: torch.Tensor, shift: float) -> Solver:
        return _cholesky_solver(self.gram(w), shift)

    def newton_solver(
        self,
        w: torch.Tensor,
        shift: float,
        last: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None,
        b: torch.Tensor | None = None,
    ) -> tuple[Solver, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """:meth:`hessian_solver`, updating the gram matrix of the previous Newton step.

        ``last = (w0, H0, h0)`` is what the previous call on the same items returned. Between
        two Newton steps only a few rows change side (13 of 45 on average over a random
        400x40 batch), so ``H = H0 + A^T diag(w - w0) A`` gathers and multiplies only those;
        when more than half of the weighted rows changed, ``H`` is formed afresh. With ``b``
        ``(k, m)`` the same rows also update ``h = A^T diag(w) b``, from which the caller
        takes the penalty's gradient ``A^T diag(w) (A y - b) = H y - h`` without a pass over
        ``A`` (``docs/solver.md`` §6). Returns the solver and ``(w, H, h)`` (``h`` is ``None``
        without ``b``) for the next call. Only float64 arithmetic is updated (measured: after
        60 updates of a 64 x 400 x 40 batch the rounding was 1.9e-15 of ``H``); other dtypes
        always form ``H``.
        """
        H = h = None
        if last is not None and w.dtype == torch.float64 and (b is None or last[2] is not None):
            dw = w - last[0]
            count, changed = _max_nonzeros_of(w, dw)
            if 2 * changed <= count:
                H, h = last[1], last[2]
                if changed and b is None:
                    H = H + self.gram(dw, changed)
                elif changed:
                    dH, dh = self.gram(dw, changed, b)
                    H, h = H + dH, h + dh
        else:
            count = _max_nonzeros(w)
        if H is None:
            H, h = (self.gram(w, count), None) if b is None else self.gram(w, count, b)
        # H is kept for the next update, so the shift goes on a new matrix
        solver = BatchedSolver(_cholesky_apply, cholesky(H + self._shift(shift, H)))
        return solver, (w, H, h if b is not None else None)

    def _shift(self, shift: float, H: torch.Tensor) -> torch.Tensor:
        """``shift`` on the diagonal and ``-0.0`` elsewhere, ``(n, n)`` like ``H``, kept per
        shift: ``x + (-0.0)`` is ``x`` bit for bit (``+0.0`` would turn ``-0.0`` into
        ``+0.0``), so ``H + shift(...)`` is ``H`` with its diagonal shifted in one operation,
        where a copy and an in-place add on its diagonal took three."""
        key = f"shift {shift!r} {H.dtype} {H.device}"
        E = self._kept.get(key)
        if E is None:
            E = torch.full((self.n, self.n), -0.0, dtype=H.dtype, device=H.device)
            E.diagonal().fill_(shift)
            self._kept[key] = E
        return E


class SparseOperator:
    """A constraint matrix on a fixed :class:`Pattern`; ``values`` is ``(N, nnz)``, N or 1."""

    def __init__(self, pattern: Pattern, values: torch.Tensor) -> None:
        self.pattern = pattern
        self.values = values
        self.m, self.n = pattern.shape
        self.info = _analyse(pattern)
        self.kind = self.info.kind
        self.separable = self.info.separable

    @property
    def shared(self) -> bool:
        return self.values.shape[0] == 1

    def take(self, idx: torch.Tensor) -> SparseOperator:
        if self.shared:
            return self
        out = SparseOperator(self.pattern, self.values[idx])
        if "arrow_products" in self.__dict__:  # the kept items' products: rows of these
            out.__dict__["arrow_products"] = tuple(t[idx] for t in self.arrow_products)
        return out

    def to(self, dtype: torch.dtype) -> SparseOperator:
        return SparseOperator(self.pattern, self.values.to(dtype))

    def detach(self) -> SparseOperator:
        return SparseOperator(self.pattern, self.values.detach())

    def scaled(self, D: torch.Tensor) -> SparseOperator:
        """The operator of ``diag(D) A`` (``D`` of shape ``(k or 1, m)``)."""
        return SparseOperator(self.pattern, self.values * self._at_nonzeros(D))

    def col_scaled(self, S: torch.Tensor) -> SparseOperator:
        """The operator of ``A diag(S)`` (``S`` of shape ``(k or 1, n)``)."""
        return SparseOperator(self.pattern, self.values * self.gather(S, self.pattern.cols))

    def multi_entry_rows(self) -> torch.Tensor | None:
        """Rows with two or more nonzeros in the pattern, ``(1, m)`` bool; None where every
        row has at most one (the AUC model): a column scaling does not change such an LP
        once its rows are scaled to unit norm."""
        multi = self.info.multi_rows
        return None if multi is None else multi.unsqueeze(0)

    @functools.cached_property
    def arrow_products(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Products of nonzeros that the arrow solver scatters (fixed while ``values`` is).

        In the order of ``_Arrow.k_row``: squares of the diagonal-block nonzeros and products
        for the coupling block ``E`` and the border block ``F``, which each Newton step only
        multiplies by the current row weights; and the heavy rows ``A_H`` as a dense slab
        ``(N, h, n)``, which it scales by their weights' square roots.
        """
        a, info = self.info.arrow, self.info
        v = self.values.to(_wide(self.values))
        prods = torch.cat(
            [
                gather_last(v, a.d_k) ** 2,
                gather_last(v, a.e_k1) * gather_last(v, a.e_k2),
                gather_last(v, a.f_k1) * gather_last(v, a.f_k2),
            ],
            -1,
        )
        slab = v.new_zeros((v.shape[0], info.n_heavy * self.n))
        slab = slab.index_add_(1, info.heavy_flat, gather_last(v, info.heavy_k))
        return prods, slab.view(v.shape[0], info.n_heavy, self.n)

    def to_dense(self) -> DenseOperator:
        """The same matrix as a :class:`DenseOperator` (differentiable in ``values``)."""
        return DenseOperator(SparseMatrix(self.pattern, self.values).to_dense())

    def gather(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """``x[..., index]`` for an index vector of this pattern (held by it or its info),
        :func:`~lpdsl.sparse.gather_last` with the index expanded to ``x``'s rows once per
        pattern and batch size: products gather at every step, and an expand is a dispatched
        operation each time."""
        if x.dim() != 2:
            return gather_last(x, index)
        kept, key = self.info.expanded, (id(index), x.shape[0])
        hit = kept.get(key)
        if hit is None or hit[0] is not index:
            if len(kept) >= 64:
                kept.clear()
            hit = kept[key] = (index, index.expand(x.shape[0], -1))
        return x.gather(-1, hit[1])

    def _batch_last(self, x: torch.Tensor) -> bool:
        """Whether a product with ``x`` ``(k, .)`` runs batch-last, where ``k`` or the values'
        batch is at least ``BATCH_LAST_MIN`` (the callers test that first: one comparison on
        a single LP's products). Not where the nonzeros are fewer than rows and columns
        together, whose transposes then cost more than the products save (one per row, the
        AUC model: A^T r 155 -> 315 us on 64 items of 32 x 32 pairs), nor for tracked values
        (their transposed copy is kept per operator)."""
        return self.info.many_nonzeros and x.dim() == 2 and not self.values.requires_grad

    @functools.cached_property
    def _values_t(self) -> torch.Tensor:
        """``values`` batch-last, ``(nnz, N)``."""
        return self.values.t().contiguous()

    def _product_t(
        self, x: torch.Tensor, at: torch.Tensor, to: torch.Tensor, size: int
    ) -> torch.Tensor:
        """``sum_k values[:, k] x[:, at[k]]`` into entry ``to[k]`` of ``size``, batch-last."""
        prod = self._values_t * x.t().contiguous().index_select(0, at)
        out = prod.new_zeros((size, prod.shape[1])).index_add_(0, to, prod)
        return out.t().contiguous()

    def matvec(self, y: torch.Tensor) -> torch.Tensor:
        p = self.pattern
        if max(y.shape[0], self.values.shape[0]) >= BATCH_LAST_MIN and self._batch_last(y):
            return self._product_t(y, p.cols, p.rows, self.m)
        prod = self.values * self.gather(y, p.cols)
        if self.info.one_per_row:  # row i's only product is prod[:, i]
            return prod
        return prod.new_zeros((prod.shape[0], self.m)).index_add_(1, p.rows, prod)

    def _at_nonzeros(self, r: torch.Tensor) -> torch.Tensor:
        """``r[..., rows]``: each nonzero's row entry (``r`` itself when rows are ``0..m-1``)."""
        return r if self.info.one_per_row else self.gather(r, self.pattern.rows)

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        if max(r.shape[0], self.values.shape[0]) >= BATCH_LAST_MIN and self._batch_last(r):
            return self._product_t(r, self.pattern.rows, self.pattern.cols, self.n)
        prod = self.values * self._at_nonzeros(r)
        return prod.new_zeros((prod.shape[0], self.n)).index_add_(1, self.pattern.cols, prod)

    def row_sq_norms(self) -> torch.Tensor:
        v2 = self.values * self.values
        if self.info.one_per_row:
            return v2
        return v2.new_zeros((v2.shape[0], self.m)).index_add_(1, self.pattern.rows, v2)

    @functools.cached_property
    def _abs(self) -> SparseOperator:
        """The operator of ``|A|``, made at its first use and kept (see
        :meth:`DenseOperator._abs`)."""
        return SparseOperator(self.pattern, self.values.abs())

    def abs_matvec(self, z: torch.Tensor) -> torch.Tensor:
        """``|A| z`` ``(k, m)``: for ``z = |x|``, the size of each row's terms at ``x``."""
        return self._abs.matvec(z)

    def row_terms(
        self, x: torch.Tensor, x_abs: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``A x`` and the size of each row's terms ``|A| |x|`` (``x_abs``: ``|x|``, where the
        caller has it). Where every row has one nonzero that is ``|A x|``, exactly (a product's
        rounding does not depend on its sign): one product instead of two."""
        ax = self.matvec(x)
        if self.info.one_per_row:
            return ax, ax.abs()
        return ax, self.abs_matvec(x.abs() if x_abs is None else x_abs)

    def abs_rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        """``|A|^T r`` ``(k, n)``: for ``r >= 0``, the size of each column's terms in ``A^T r``."""
        return self._abs.rmatvec(r)

    def row_abs_max(self) -> torch.Tensor:
        """``max_j |A_ij|`` per row, ``(k, m)`` (0 for a row without nonzeros)."""
        v = self.values.abs()
        if self.info.one_per_row:
            return v
        out = v.new_zeros((v.shape[0], self.m))
        return out.scatter_reduce_(1, self.pattern.rows.expand_as(v), v, "amax")

    def col_abs_max(self) -> torch.Tensor:
        """``max_i |A_ij|`` per column, ``(k, n)`` (0 for a column without nonzeros)."""
        v = self.values.abs()
        out = v.new_zeros((v.shape[0], self.n))
        return out.scatter_reduce_(1, self.pattern.cols.expand_as(v), v, "amax")

    def gram_diagonal(self, w: torch.Tensor) -> torch.Tensor:
        """``diag(A^T diag(w) A)``: ``(k, n)``; the Jacobi preconditioner of the CG path."""
        prod = self._at_nonzeros(w) * self.values * self.values
        return prod.new_zeros((prod.shape[0], self.n)).index_add_(1, self.pattern.cols, prod)

    def gram(self, w: torch.Tensor) -> torch.Tensor:
        """``A^T diag(w) A`` assembled densely from the row-sharing pairs of nonzeros."""
        info = self.info
        if info.kind == "diagonal":
            return torch.diag_embed(self.gram_diagonal(w))
        if info.k1 is None:  # no pair lists (large n): through the dense matrix
            dense = SparseMatrix(self.pattern, self.values).to_dense()
            return DenseOperator(dense).gram(w)
        k = max(w.shape[0], self.values.shape[0])
        prod = (
            self.gather(w, info.k1_row)
            * self.gather(self.values, info.k1)
            * self.gather(self.values, info.k2)
        )
        prod = prod.expand(k, -1)
        H = prod.new_zeros((k, self.n * self.n)).index_add_(1, info.flat, prod)
        H = H.view(k, self.n, self.n)
        if info.n_heavy:  # the heavy rows as a dense slab; only its weighted rows multiply
            vals = self.gather(self.values, info.heavy_k)
            kv = vals.shape[0]
            slab = vals.new_zeros((kv, info.n_heavy * self.n))
            slab = slab.index_add(1, info.heavy_flat, vals)
            slab = DenseOperator(slab.view(kv, info.n_heavy, self.n))
            H = H + slab.gram(self.gather(w, info.heavy_ids))
        return H

    def newton_solver(
        self, w: torch.Tensor, shift: float, last: object = None, b: object = None
    ) -> tuple[Solver, None]:
        """:meth:`hessian_solver` (no update of a previous step, no ``h``: see
        :meth:`DenseOperator.newton_solver`); on the CG path to ``NEWTON_CG_RTOL``."""
        return self.hessian_solver(w, shift, NEWTON_CG_RTOL), None

    def hessian_solver(self, w: torch.Tensor, shift: float, rtol: float = CG_RTOL) -> Solver:
        if self.kind == "diagonal":
            # the shift only where a variable has no weighted row: elsewhere the diagonal is
            # inverted exactly (unit rows: it counts the rows), so no refinement is needed
            diag = self.gram_diagonal(w)
            return BatchedSolver(_diagonal_apply, torch.where(diag > 0.0, diag, shift), exact=True)
        k = max(w.shape[0], self.values.shape[0])
        if self.kind == "pairs" and k * self.n**2 <= PAIRS_MAX_ENTRIES:
            return _cholesky_solver(self.gram(w), shift)
        if self.kind == "arrow":
            if self.info.k1 is not None and k * self.n**3 < ARROW_MIN_WORK:
                # small: one dense Cholesky costs fewer (tiny) torch operations
                return _cholesky_solver(self.gram(w), shift)
            return _arrow_solver(self, w, shift)
        return CGSolver(self, w, shift, rtol)


def cholesky(H: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Cholesky factor of a batch of (semi)definite ``H``, robust to rounding.

    A Hessian shifted by a tiny ``rho`` can lose definiteness to rounding (a float32 Schur
    complement, a badly scaled netlib model); then the diagonal is shifted once more, by a
    relative ``1e-10`` (float64) or ``1e-5`` (lower precisions) of its largest entry, or of
    ``scale`` ``(k,)`` where that is larger: the size of the terms whose difference ``H`` is
    (a Schur complement cancels its border block; its rounding is relative to that block, not
    to the small result). Only an input that is still not definite raises.
    """
    try:  # torch tests the factors' info itself: two dispatched operations fewer than info.any()
        return torch.linalg.cholesky_ex(H, check_errors=True)[0]
    except torch.linalg.LinAlgError:
        pass
    rel = 1e-10 if H.dtype == torch.float64 else 1e-5
    size = H.diagonal(dim1=-2, dim2=-1).abs().amax(-1)
    if scale is not None:
        size = torch.maximum(size, scale)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device)
    return torch.linalg.cholesky(H + (rel * size.clamp_min(1.0))[..., None, None] * eye)


def _cholesky_solver(H: torch.Tensor, shift: float) -> Solver:
    H = H.clone() if H.requires_grad else H  # H is a fresh product: shift its diagonal in place
    H.diagonal(dim1=-2, dim2=-1).add_(shift)
    return BatchedSolver(_cholesky_apply, cholesky(H))


@dataclass(frozen=True)
class _Blocks:
    """Index data of the block-Jacobi preconditioner (see :func:`_block_info`)."""

    b: int  # block size
    nb: int  # number of blocks (the last one padded)
    gmax: int  # most rows touching one block
    pos: torch.Tensor  # (nnz,) slot of every nonzero in the (nb, gmax, b) slab


@per_pattern
def _block_info(pattern: Pattern) -> _Blocks | None:
    """Slab layout for the diagonal ``b x b`` blocks of ``A^T W A`` (cached per pattern).

    Columns are cut into contiguous blocks of ``BLOCK_SIZE``; every (row, block) pair with a
    nonzero gets one slab row, so block ``j`` of the Hessian is ``S_j^T S_j`` with ``S_j`` the
    ``(gmax, b)`` slab of block ``j`` scaled by ``sqrt(w)`` (one batched matmul per step).
    ``None`` when the slab would exceed ``BLOCK_MAX_ENTRIES`` (then CG falls back to Jacobi).
    """
    m, n = pattern.shape
    b = min(BLOCK_SIZE, n)
    nb = -(-n // b)
    rows, cols = pattern.rows, pattern.cols
    blk = cols // b
    key = blk * m + rows
    uniq, group = torch.unique(key, return_inverse=True)
    g_blk = uniq // m
    per_blk = torch.bincount(g_blk, minlength=nb)
    gmax = int(per_blk.max()) if pattern.nnz else 0
    info = None
    if 0 < nb * gmax * b <= BLOCK_MAX_ENTRIES:
        first = torch.cumsum(per_blk, 0) - per_blk
        local = torch.arange(uniq.numel(), device=rows.device) - first[g_blk]
        pos = (blk * gmax + local[group]) * b + cols % b
        info = _Blocks(b, nb, gmax, pos)
    return info


def _block_jacobi(op: SparseOperator, w: torch.Tensor, shift: float) -> Callable | None:
    """``r -> blockdiag(H)^{-1} r`` with ``H = A^T diag(w) A + shift I``, or ``None``."""
    bi = _block_info(op.pattern)
    k = max(w.shape[0], op.values.shape[0])
    if bi is None or k * bi.nb * bi.b * bi.b > BLOCK_MAX_ENTRIES:
        return None
    b, nb, n = bi.b, bi.nb, op.n
    sv = op.values * op.gather(w, op.pattern.rows).sqrt()
    S = sv.new_zeros((k, nb * bi.gmax * b)).index_add_(1, bi.pos, sv.expand(k, -1))
    S = S.view(k * nb, bi.gmax, b)
    H = S.transpose(1, 2) @ S
    diag = H.diagonal(dim1=-2, dim2=-1)
    diag.add_(shift)
    pad = nb * b - n
    if pad:  # padded columns of the last block: identity
        H.view(k, nb, b, b)[:, -1].diagonal(dim1=-2, dim2=-1)[:, b - pad :] = 1.0
    L = cholesky(H)

    def apply(r: torch.Tensor) -> torch.Tensor:
        rr = torch.nn.functional.pad(r, (0, pad)) if pad else r
        rr = rr.expand(k, -1).reshape(k * nb, b, 1)
        return torch.cholesky_solve(rr, L).view(k, nb * b)[:, :n]

    return apply


@dataclass(frozen=True)
class CGSolver:
    """``r -> (A^T diag(w) A + shift I)^{-1} r`` by :func:`_cg` to relative residual ``rtol``
    (``inexact`` when looser than ``CG_RTOL``: a Newton direction, not a recovery's solve)."""

    op: SparseOperator
    w: torch.Tensor
    shift: float
    rtol: float
    exact: ClassVar[bool] = False  # shifted, and iterative

    @property
    def inexact(self) -> bool:
        return self.rtol > CG_RTOL

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return _CGSolve.apply(self.op.values, self.w, r, self.op, self.shift, self.rtol)


def _cg(
    op: SparseOperator, w: torch.Tensor, shift: float, r: torch.Tensor, rtol: float = CG_RTOL
) -> torch.Tensor:
    """Block-Jacobi- (else Jacobi-) preconditioned CG for ``(A^T diag(w) A + shift I) u = r``,
    batched, no grad."""
    precond = _block_jacobi(op, w, shift)
    if precond is None:
        inv_diag = 1.0 / (op.gram_diagonal(w) + shift)

        def precond(v: torch.Tensor) -> torch.Tensor:
            return v * inv_diag

    def apply(v: torch.Tensor) -> torch.Tensor:
        return op.rmatvec(w * op.matvec(v)) + shift * v

    u = precond(r)
    res = r - apply(u)
    z = precond(res)
    p = z
    rz = (res * z).sum(-1, keepdim=True)
    target = (rtol * r.norm(dim=-1, keepdim=True)) ** 2
    for _ in range(4 * op.n + 10):
        if bool(((res * res).sum(-1, keepdim=True) <= target).all()):
            break
        Ap = apply(p)
        alpha = rz / (p * Ap).sum(-1, keepdim=True).clamp_min(torch.finfo(r.dtype).tiny)
        u = u + alpha * p
        res = res - alpha * Ap
        z = precond(res)
        rz_new = (res * z).sum(-1, keepdim=True)
        p = z + (rz_new / rz.clamp_min(torch.finfo(r.dtype).tiny)) * p
        rz = rz_new
    return u


FORWARD_OVER_REVERSE = (
    "solve(): torch.func.hessian and other forward-over-reverse transforms are not supported; "
    "use reverse over reverse (torch.func.jacrev(torch.func.jacrev(f)), or backward with "
    "create_graph=True)"
)


class PerItemFunction(torch.autograd.Function):
    """An autograd function whose forward runs per-item solves (factors, or loops that stop
    on a test), which a ``torch.vmap`` dimension cannot batch.

    ``jacrev(jacrev(f))`` vmaps what a backward applies under ``create_graph``: the vmap
    rule calls the function once per slice (torch's generated rule hit an internal assertion
    of functorch, and the CG loop's stopping test cannot read a batched tensor). Forward-mode
    (``torch.func.hessian``, jacfwd over jacrev) is refused with a :class:`DSLError` naming
    what works: it failed with torch's own error (a reviewing helper, twelfth pass)."""

    @classmethod
    def vmap(cls, info, in_dims, *args):
        sizes = {a.shape[d] for a, d in zip(args, in_dims, strict=True) if d is not None}
        if not sizes:
            return cls.apply(*args), None

        def part(i: int) -> list:
            return [a if d is None else a.select(d, i) for a, d in zip(args, in_dims, strict=True)]

        return torch.stack([cls.apply(*part(i)) for i in range(sizes.pop())]), 0

    @staticmethod
    def jvp(ctx, *tangents):
        raise DSLError(FORWARD_OVER_REVERSE)


class _CGSolve(PerItemFunction):
    """``u = K^{-1} r`` with ``K = A^T diag(w) A + shift I``, differentiated implicitly.

    Backward: ``grad_r = K^{-1} g`` (one more CG solve) and, since ``dK = dA^T W A + A^T W dA``,
    ``grad_A = -W (A g_r u^T + A u g_r^T)`` gathered on the pattern.
    """

    @staticmethod
    def forward(values, w, r, op, shift, rtol):
        with torch.no_grad():
            base = SparseOperator(op.pattern, values.detach())
            return _cg(base, w.detach(), shift, r.detach(), rtol)

    @staticmethod
    def setup_context(ctx, inputs, output):
        values, w, _, op, shift, rtol = inputs
        ctx.save_for_backward(values, w, output)
        ctx.op_pattern = op.pattern
        ctx.shift, ctx.rtol = shift, rtol

    @staticmethod
    def backward(ctx, g):
        values, w, u = ctx.saved_tensors
        op = SparseOperator(ctx.op_pattern, values.detach())
        gr = _CGSolve.apply(values.detach(), w.detach(), g, op, ctx.shift, ctx.rtol)
        grad_values = None
        if ctx.needs_input_grad[0]:
            p = op.pattern
            Au, Ag = op.matvec(u), op.matvec(gr)
            wr = gather_last(w, p.rows)
            grad_values = -wr * (
                gather_last(Au, p.rows) * gather_last(gr, p.cols)
                + gather_last(Ag, p.rows) * gather_last(u, p.cols)
            )
            if values.shape[0] == 1 and grad_values.shape[0] != 1:
                grad_values = grad_values.sum(0, keepdim=True)
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = -(op.matvec(gr) * op.matvec(u))
        return grad_values, grad_w, gr, None, None, None


#: The two operators' common surface (products with ``A`` and ``A^T``, Hessian solvers): what
#: the Newton driver and ``lpdsl.diff`` take as ``op``.
Operator = DenseOperator | SparseOperator
