"""Solving a Charnes–Cooper LP (the LP of a ratio objective, ``t`` its last column).

The compiler's Charnes–Cooper pass (``lpdsl/compiler/charnes_cooper.py``) makes the LP over
``(y, t)``; this module solves it as :func:`lpdsl.solve` does, then again with ``t`` measured in
another unit where the first solve certified a large ``x = y / t`` or ended MAX_ITER
(:func:`solve_ratio_lp`, docs/compiler.md "Solving it"), and builds ``min den`` over the
model's feasible set (:func:`denominator_lp`) for ``LPLayer``'s denominator check.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import torch

from lpdsl.solvers.newton import Solution, default_tol, solve
from lpdsl.solvers.scaling import inverse_power_of_two
from lpdsl.solvers.status import Status
from lpdsl.sparse import Pattern, SparseMatrix, per_pattern

#: A Charnes–Cooper solution with ``max |x| = max |y| / t`` above this is solved again with
#: ``t`` in the unit ``1 / max |x|`` (:func:`solve_ratio_lp`); with ``t`` in a unit ``u < 1`` a
#: solution counts only where ``u max |x|`` lies within a factor ``LARGE_X`` of 1.
LARGE_X = 2.0**8
#: Items that end MAX_ITER are solved again with ``t`` in the units ``RUNG``, ``RUNG^2``, ...
#: down to ``SMALLEST_UNIT`` (``max |x|`` up to ~1e12 x ``LARGE_X``), and once in their own
#: unit at most: at most 6 re-solves after the first solve, ``RATIO_ROUNDS`` a cap
#: (:func:`solve_ratio_lp`).
RUNG = 2.0**-8
SMALLEST_UNIT = 2.0**-40
RATIO_ROUNDS = 8
#: A re-solved point counts only where its dual certificate in the data's units
#: (:func:`dual_error`) is within this many times the tolerance: the solver's certificate
#: admitted 1.9e-8 of the terms in t's column at a correct point (u = 1e9 with t in the unit
#: 2^-30), and a third of them at a wrong one (t in the unit 2^-40).
KKT_FACTOR = 1e3


def _items(A: Any, b: torch.Tensor, c: torch.Tensor, batch: tuple, idx: torch.Tensor) -> tuple:
    """``(A, b, c)`` of the items ``idx`` of the flattened (broadcast) batch ``batch``."""
    if isinstance(A, SparseMatrix):
        nnz = A.values.shape[-1]
        A = SparseMatrix(A.pattern, A.values.expand(*batch, nnz).reshape(-1, nnz)[idx])
    else:
        A = A.expand(*batch, *A.shape[-2:]).reshape(-1, *A.shape[-2:])[idx]
    b = b.expand(*batch, b.shape[-1]).reshape(-1, b.shape[-1])[idx]
    return A, b, c.expand(*batch, c.shape[-1]).reshape(-1, c.shape[-1])[idx]


def dual_error(A: Any, c: torch.Tensor, x: torch.Tensor, v: torch.Tensor, b: torch.Tensor):
    """Largest relative error of the dual certificate of ``(x, v)`` for ``min c.x s.t. A x <=
    b`` in the data's own units, ``(k,)``: columns of ``A^T v + c`` against ``|A|^T |v| +
    |c|`` (floored at 64 eps of the largest column's: rounding), a negative ``v``, the gap.

    No scaling of a column changes it. The solver's certificate works in row-scaled units,
    relative to each column's largest entry: with ``t`` in the unit ``2^-40`` it certified a
    point whose ``t`` column is off by a third of its terms (``docs/compiler.md``). The primal
    side is not repeated: the working unit's test of it is the tight one.
    """
    with torch.no_grad():
        if isinstance(A, SparseMatrix):
            ATv = A.rmatvec(v)
            terms = SparseMatrix(A.pattern, A.values.abs()).rmatvec(v.abs()) + c.abs()
        else:
            ATv = (v[..., None, :] @ A)[..., 0, :]
            terms = (v.abs()[..., None, :] @ A.abs())[..., 0, :] + c.abs()
        eps, tiny = torch.finfo(x.dtype).eps, torch.finfo(x.dtype).tiny
        floor = 64 * eps * terms.amax(-1, keepdim=True)
        stat = ((ATv + c).abs() / torch.maximum(terms, floor).clamp_min(tiny)).amax(-1)
        neg = torch.relu(-v).amax(-1) / v.abs().amax(-1).clamp_min(tiny)
        gap = ((c * x).sum(-1) + (b * v).sum(-1)).abs()
        gap = gap / ((c * x).abs().sum(-1) + (b * v).abs().sum(-1)).clamp_min(tiny)
        return torch.maximum(torch.maximum(stat, neg), gap)


def _certified_scale(status: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item ``(k,)`` of a Charnes–Cooper solution ``x`` ``(k, n)``: whether it is OPTIMAL
    with ``t > 0`` and a finite ``max |x| = max |y| / t``, and that ``max |x|``."""
    x_max = x[:, :-1].abs().amax(-1) / x[:, -1]
    ok = (status == int(Status.OPTIMAL)) & (x[:, -1] > 0.0) & torch.isfinite(x_max)
    return ok, x_max


def solve_ratio_lp(
    A: Any, b: torch.Tensor, c: torch.Tensor, warm_start: Solution | None = None, **options: Any
) -> Solution:
    """:func:`lpdsl.solve` for a Charnes–Cooper LP (``t`` its last column), solved again with
    ``t`` in another unit where the first solve certified a large ``x = y / t`` or ended
    MAX_ITER.

    ``t / |y| = 1 / |x|``, and the solver's tolerance is relative to each row's norm times
    ``|(y, t)|``: a row ``x_0 <= u`` becomes ``y_0 - u t <= 0``, and at ``u = 1e9`` a violation
    of 1e-9 of its norm is ``x_0 = 2u`` (a helper's probe: certified OPTIMAL, ``dx_0/du =
    2e-9``). Items certified at ``max |x| > LARGE_X`` are solved again for ``t' = t |x|`` (a
    power of two: exact), where ``y`` and ``t'`` have one scale. Items that end MAX_ITER (at
    ``|x|`` ~ 1e9 the first solve's iterate ran off to ``|y|`` ~ 1e15 with ``t < 0``: no
    estimate of ``|x|``) are solved again with ``t`` in the units ``2^-8``, ``2^-16``, ...,
    largest first, until one certifies. A unit ``u < 1`` counts only where the point it
    certifies has ``u max |x|`` within ``[1 / LARGE_X, LARGE_X]``; a point above it is solved
    again in its own unit, one below it ends the item's ladder (it keeps its first result; every
    solve of an item that fails throughout costs ``max_iter`` again). Too small a unit certifies
    wrong points: with ``u = 2^-40`` the optimum ``x = (0, 2)`` of
    ``test_large_constants_inactive_at_a_small_optimum`` came out OPTIMAL at ``x_0 = 9.6e11``
    (its dual is off by 1 in ``t``'s column, ``u`` in ``t'``'s), and a denominator constant 1e9
    at ``|x|`` ~ 1 gave points 5 % off at ``u <= 2^-27``; taking the largest unit that certifies
    passes the right scale before such units (a unit chosen before solving, from the largest
    constant of the rows, broke the first case -- a reviewing helper). The returned ``Solution``
    is in ``t`` itself (docs/compiler.md). ``A``, ``b``, ``c`` broadcast as for
    :func:`lpdsl.solve`.
    """
    sol = solve(A, b, c, warm_start=warm_start, **options)
    batch = tuple(sol.status.shape)
    with torch.no_grad():
        status, x = sol.status.reshape(-1), sol.x.reshape(-1, sol.x.shape[-1])
        certified, x_max = _certified_scale(status, x)
        large = certified & (x_max > LARGE_X)
        todo = large | (status == int(Status.MAX_ITER))
        if not bool(todo.any()):
            return sol
        rung = torch.where(large, 1.0, RUNG).to(x.dtype)  # where MAX_ITER leads down the ladder
        unit = torch.where(large, inverse_power_of_two(torch.where(large, x_max, 1.0)), rung)
    tol = options.get("tol") or default_tol(sol.y.dtype)
    merged = {f.name: getattr(sol, f.name) for f in fields(sol)}
    merged = {k: v.reshape((-1, *v.shape[len(batch) :])) for k, v in merged.items()}
    spent = merged["iterations"].clone()  # every solve's Newton iterations, per item
    jumped = large.clone()  # an item is solved in its own unit once at most
    for _ in range(RATIO_ROUNDS):
        idx = todo.nonzero().squeeze(1)
        if not idx.numel():
            break
        A_i, b_i, c_i = _items(A, b, c, batch, idx)
        A_t, c_t = in_t_unit(A_i, c_i, unit[idx])
        again = solve(A_t, b_i, c_t, **options)
        again = replace(again, x=t_times(again.x, unit[idx]), y=t_times(again.y, unit[idx]))
        with torch.no_grad():
            ok, x_max = _certified_scale(again.status, again.x)
            ratio = unit[idx] * x_max
            kkt = dual_error(A_i, c_i, again.x, again.dual, b_i) <= KKT_FACTOR * tol
            take = ok & kkt & (ratio <= LARGE_X) & (ratio >= 1.0 / LARGE_X)
            # certified at a large point: once more in its unit; at a small one: the units
            # further down are smaller still for it, so the item stops (keeps what it had)
            # (a second jump would repeat a unit already refused: a reviewing helper saw
            # the same LP solved four times)
            high, low = ok & (ratio > LARGE_X) & ~jumped[idx], ok & (ratio < 1.0 / LARGE_X)
            jumped = jumped.index_put((idx,), jumped[idx] | high)
            spent = spent.index_add(0, idx, again.iterations.to(spent.dtype))
            jump = inverse_power_of_two(torch.where(high, x_max, 1.0))
            down = rung[idx] * RUNG
            rung = rung.index_put((idx,), torch.where(high, rung[idx], down))
            nxt = torch.where(high, jump, down)
            unit = unit.index_put((idx,), nxt)
            todo = todo.index_put((idx,), ~take & ~low & (nxt >= SMALLEST_UNIT))
        if bool(take.any()):
            sel = idx[take]
            for k, v in merged.items():
                merged[k] = v.index_copy(0, sel, getattr(again, k)[take].to(v.dtype))
    merged["iterations"] = spent
    return Solution(**{k: v.reshape((*batch, *v.shape[1:])) for k, v in merged.items()})


def in_t_unit(
    A: torch.Tensor | SparseMatrix, c: torch.Tensor, unit: torch.Tensor
) -> tuple[torch.Tensor | SparseMatrix, torch.Tensor]:
    """``(A, c)`` of the same LP over ``(y, t / unit)``, ``unit`` ``(*B,)`` (``t`` is the last
    column): the Charnes–Cooper LP with ``t`` measured in another unit (``LPLayer`` re-solves a
    large ``x`` so, docs/compiler.md)."""
    batch = unit.shape  # the solve's (broadcast) batch: A and c may have fewer dimensions
    c = c.expand(*batch, c.shape[-1])
    if isinstance(A, SparseMatrix):
        col = A.pattern.cols == A.pattern.shape[1] - 1
        values = A.values.expand(*batch, A.values.shape[-1])
        A = SparseMatrix(A.pattern, torch.where(col, values * unit.unsqueeze(-1), values))
    else:
        A = A.expand(*batch, *A.shape[-2:])
        A = torch.cat([A[..., :-1], A[..., -1:] * unit[..., None, None]], -1)
    return A, torch.cat([c[..., :-1], c[..., -1:] * unit.unsqueeze(-1)], -1)


def t_times(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x`` ``(*B, n)`` with its last entry (``t``) multiplied by ``factor`` ``(*B,)``."""
    return torch.cat([x[..., :-1], x[..., -1:] * factor.to(x.dtype).unsqueeze(-1)], -1)


def denominator_lp(
    A: torch.Tensor | SparseMatrix, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``min den(x)`` over the model's feasible set, from its Charnes–Cooper LP ``(A, b)``.

    Setting ``t = 1`` in the homogenised rows (``b_i = 0``) gives the original rows ``A_i x <=
    -A_it``; the pair ``den(y, t) = 1`` (``b_i = +-1``) gives ``den(x) = q.x + q_0`` and is
    dropped (its rows become ``0 <= 1``). Returns ``(A', b', q, q_0)``: ``min q.x s.t. A' x <=
    b'`` has value ``min den - q_0``. Charnes–Cooper needs ``den > 0`` on the feasible set; where
    ``den`` changes sign it optimises over the part with ``den > 0`` only (``min (x + 2) / x``
    over ``-1 <= x <= 1`` gave 3, the infimum being ``-inf``: a helper's probe).
    """
    if isinstance(A, SparseMatrix):
        pat, values = A.pattern, A.values
        m, n = pat.shape
        b = b.expand(*values.shape[:-1], m) if b.dim() < values.dim() else b
        values = values.expand(*b.shape[:-1], values.shape[-1])
        b_k = b.index_select(-1, pat.rows)
        on_t = pat.cols == n - 1
        t_col = values.new_zeros(b.shape).index_add(-1, pat.rows[on_t], values[..., on_t])
        q_row = values.new_zeros((*b.shape[:-1], n))
        q_row = q_row.index_add(-1, pat.cols, torch.where(b_k > 0.0, values, 0.0))
        A_x = SparseMatrix(_without_t(pat), torch.where(b_k == 0.0, values, 0.0)[..., ~on_t])
    else:
        A, b = torch.broadcast_tensors(A, b.unsqueeze(-1))[0], b.expand(A.shape[:-1])
        t_col = A[..., -1]
        q_row = (A * (b > 0.0).to(A.dtype).unsqueeze(-1)).sum(-2)
        A_x = torch.where((b == 0.0).unsqueeze(-1), A[..., :-1], 0.0)
    b_x = torch.where(b == 0.0, -t_col, 1.0)
    return A_x, b_x, q_row[..., :-1], q_row[..., -1]


@per_pattern
def _without_t(pattern: Pattern) -> Pattern:
    """``pattern`` without its last column (the column of ``t``)."""
    keep = pattern.cols < pattern.shape[1] - 1
    return Pattern(pattern.rows[keep], pattern.cols[keep], (pattern.shape[0], pattern.shape[1] - 1))
