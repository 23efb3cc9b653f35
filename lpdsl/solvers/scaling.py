"""The scaled problem the Newton iterations and the certificate work on (docs/solver.md §4).

Rows of ``A`` and ``b`` are scaled to unit norm (``D``) and ``c`` to unit norm (``gamma``), so
that one tolerance means the same on every row and for every cost; columns far smaller than
the others are scaled up by powers of two (``x = S x'``, exact) where the LP needs it. The
driver (:mod:`lpdsl.solvers.newton`) decides where a column scaling is kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lpdsl.errors import DataScaleError

#: A column is scaled up when its largest entry, in rows of two or more nonzeros scaled to
#: unit norm, is below this fraction of the largest column's (docs/solver.md §4).
COLUMN_SPREAD = 4.0


def magnitude_limit(work: torch.dtype) -> float:
    """The largest entry whose square, summed over a row, stays far from overflow in ``work``."""
    return math.sqrt(torch.finfo(work).max) * 1e-4


def column_scales(op: Any, c: torch.Tensor, work: torch.dtype) -> torch.Tensor | None:
    """Powers of two ``S >= 1`` per column, ``(k or 1, n)``, or None where none is needed.

    The solver then works on ``(A diag(S), b, S c)`` in ``x = S x'``: the same LP, exactly
    (powers of two). Row scaling makes every row a unit vector, but a variable whose
    coefficients are ~1e-3 of the others' in every row it shares (a variable in other units)
    leaves the penalty almost flat along it, and such LPs ended MAX_ITER (docs/solver.md §4).
    ``S_j`` brings column ``j``'s largest entry, over the rows of two or more nonzeros at unit
    norm, up to the largest column's; rows of one nonzero (bounds) are left out, as row
    scaling undoes any column scaling on them. Columns within ``COLUMN_SPREAD`` of the
    largest keep ``S_j = 1`` (the paper's models and well-scaled LPs are left as they are),
    and ``S_j |A_ij|``, ``S_j |c_j|`` stay below the magnitude check's limit.
    """
    multi = op.multi_entry_rows()
    if multi is None:
        return None
    sq = op.row_sq_norms()
    unit = torch.where(multi & (sq > 0.0), sq.rsqrt(), 0.0)
    s = op.scaled(unit).col_abs_max()
    top = s.amax(-1, keepdim=True)
    low = (s > 0.0) & (s < top / COLUMN_SPREAD)
    if not bool(low.any()):
        return None
    c_top = c.abs().amax(0, keepdim=True) if op.shared else c.abs()  # a shared A stays shared
    room = magnitude_limit(work) * 1e-2 / torch.maximum(op.col_abs_max(), c_top)
    k = torch.minimum(torch.round(torch.log2(top / s)), torch.floor(torch.log2(room)))
    return torch.where(low, torch.exp2(k.clamp_min(0.0)), 1.0)


@dataclass
class Scaled:
    """One working subset of items: the row-scaled operator, the scaling, the data."""

    ops: Any  # the operator of D A (rows scaled to unit norm); A itself is never needed
    D: torch.Tensor  # (k or 1, m)
    b: torch.Tensor  # (k, m) original b
    c: torch.Tensor  # (k, n) original c
    bs: torch.Tensor  # (k, m) D b
    cs: torch.Tensor  # (k, n) c / gamma
    gamma: torch.Tensor  # (k,)
    colmax: torch.Tensor  # (k or 1, n) max_i |(D A)_ij|: the scale of column j's terms
    length: torch.Tensor  # (k,) the length scale min(1, max |D b|) (length_scale)

    @staticmethod
    def of(
        op: Any,
        D: torch.Tensor,
        b: torch.Tensor,
        c: torch.Tensor,
        gamma: torch.Tensor,
        empty: torch.Tensor | None = None,
    ) -> Scaled:
        """The problem of ``op``'s rows scaled by ``D`` and ``c`` by ``1 / gamma``; ``empty``
        marks rows without coefficients, which the length scale leaves out (their ``b`` is no
        length: ``x >= 0`` with the compiler's residue ``0 <= -5.6e-17`` took it for the LP's
        length scale and was INFEASIBLE, and a row ``0 <= 1`` made ``x <= 0, x >= 1e-10``
        MAX_ITER: a verifying helper, 22nd pass)."""
        ops, bs = op.scaled(D), D * b
        cs = c / gamma[:, None]
        length = length_scale(bs if empty is None else torch.where(empty, 0.0, bs))
        return Scaled(ops, D, b, c, bs, cs, gamma, ops.col_abs_max(), length)

    def take(self, idx: torch.Tensor) -> Scaled:
        """The items ``idx`` (sorted, as from ``nonzero``; all of them: ``self``, no copy)."""
        if idx.numel() == self.b.shape[0]:
            return self
        D = self.D if self.D.shape[0] == 1 else self.D[idx]
        return Scaled(
            self.ops.take(idx),
            D,
            self.b[idx],
            self.c[idx],
            self.bs[idx],
            self.cs[idx],
            self.gamma[idx],
            self.colmax if self.colmax.shape[0] == 1 else self.colmax[idx],
            self.length[idx],
        )

    def residual(self, y: torch.Tensor) -> torch.Tensor:
        return self.ops.matvec(y) - self.bs


def length_scale(bs: torch.Tensor) -> torch.Tensor:
    """The LP's length scale ``min(1, max |D b|)`` per item (1 where ``b = 0``): the primal
    test's allowance is relative to it, and the gap test's floor (in units of ``|c|``) to it or
    to the point's ``max |x|`` where that is longer. With a floor of 1, the gap test passed any
    point of an LP whose rows pass within 1e-25 of the origin (float32 arithmetic certified an
    interior point 36 % off: a verifying helper, 21st pass); with the length scale alone, an
    F-beta LP at beta = 0.01 (L = 0.125, x ~ 3e3) lost the certificate that ``tol=1e-5`` gave
    it."""
    top = bs.abs().amax(-1)
    return torch.where(top > 0.0, top.clamp_max(1.0), 1.0)


def inverse_power_of_two(t: torch.Tensor) -> torch.Tensor:
    """``2^-e`` with ``t = f 2^e``, ``f`` in ``[1/2, 1)`` (1 where ``t = 0``): ``t`` times it
    lies in ``[1/2, 1)``, and multiplying by it is exact."""
    return torch.ldexp(torch.ones_like(t), -torch.frexp(t).exponent)


def below_normal(top: torch.Tensor, tiny: float) -> tuple[int, int] | None:
    """The first place ``(item, row)`` of ``top`` ``(k, m)`` holding a nonzero below ``tiny``
    (a normal range's least), or None."""
    sub = (top > 0.0) & (top < tiny)
    return tuple(int(i) for i in sub.nonzero()[0]) if bool(sub.any()) else None  # type: ignore[return-value]


def _refuse_subnormal(top: torch.Tensor, what: str) -> None:
    """Refuse rows (``top``: each one's largest ``|entry|``, ``(k, m)``) whose nonzero entries
    are all subnormal: no power of two brings them to unit norm (``2^1063`` is inf), and a row
    ``1e-309 x <= 1e-309`` crashed Cholesky or made a bounded LP UNBOUNDED; a cost of 1e-309
    ended MAX_ITER (probing helpers, 25th pass)."""
    place = below_normal(top, torch.finfo(top.dtype).tiny)
    if place is not None:
        item, row = place
        where = f"row {row} of A and b" if what == "row" else "c"
        detail = (
            f"{where.split(' and ')[0]} (flattened batch item {item}) has entries all below "
            f"{top.dtype}'s normal range (largest {float(top[item, row]):.3g})"
        )
        wider = top.dtype != torch.float64
        advice = f"rescale the LP (multiply {where} by a common factor)" + (
            " or compute in float64" if wider else ""
        )
        raise DataScaleError(f"solve(): {detail}: {advice}", detail, wider)


def scaled_problem(op: Any, b: torch.Tensor, c: torch.Tensor) -> tuple[Scaled, torch.Tensor | None]:
    """The LP with its rows at unit norm (``D``) and ``c`` at unit norm (``gamma``), and which
    rows have no nonzero (``None`` where every row's squared norm is at least ``tiny``, so that
    none can be without).

    Where a squared norm may have underflowed (a zero or subnormal one), norms are taken of
    rows (and c) first scaled by a power of two near 1 / their largest entry (exact): a row
    of entries ~1e-170 squared to 0 and counted as a zero row, so with b < 0 the LP was
    INFEASIBLE in 0 iterations, and a cost ~1e-165 counted as c = 0 (a helper's probe,
    eleventh pass). Only then: it costs a pass over A that most LPs do not need."""
    tiny = torch.finfo(b.dtype).tiny  # (a power of two, as its square root)
    sq = op.row_sq_norms()
    empty = None  # rows without coefficients
    if _least(sq) < tiny:  # only then can a row be without any
        top = op.row_abs_max()
        _refuse_subnormal(top, "row")
        pre = inverse_power_of_two(top)
        sq = op.scaled(pre).row_sq_norms()
        D = torch.where(sq > 0.0, pre * sq.rsqrt(), 1.0)
        empty = sq == 0.0
    else:  # every squared norm is normal, so none is 0
        D = sq.rsqrt()
    gamma = torch.linalg.vector_norm(c, dim=-1)  # (Tensor.norm: two Python layers)
    if _least(gamma) < tiny**0.5:
        top = c.abs().amax(-1)
        _refuse_subnormal(top[:, None], "cost")
        c_pre = inverse_power_of_two(top)
        gamma = torch.linalg.vector_norm(c * c_pre[:, None], dim=-1) / c_pre
        gamma = torch.where(gamma > 0.0, gamma, 1.0)
    return Scaled.of(op, D, b, c, gamma, empty), empty


def _least(t: torch.Tensor) -> float:
    """``t``'s smallest entry (inf for an empty ``t``): one read, where a test ``(t < a).any()``
    is three dispatched operations."""
    return float(t.amin()) if t.numel() else math.inf
