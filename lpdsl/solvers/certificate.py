"""The certificate: when is a recovered ``(x, dual)`` an optimal pair? (docs/solver.md §3, §5).

OPTIMAL is decided from evidence only: the point recovered from a penalty minimiser's active
set (:func:`lpdsl.diff.active.recover`) must be feasible, and its dual nonnegative, stationary
and with a zero duality gap, all within ``tol`` on the unit rows of :class:`Scaled`
(:func:`certify`), and also against each row's and column's own terms in the LP's units
(:func:`holds_in_terms`). :func:`certify_stage` is the recovery and certificate of a stage's
end: the least-squares dual, then the penalty dual; completion of degenerate active sets;
the split of inconsistent ones; a last test that no feasible move lowers the objective.
"""

from __future__ import annotations

from typing import Any

import torch

from lpdsl.diff.active import RECOVERY_SHIFT, null_part, recover
from lpdsl.solvers.scaling import Scaled, length_scale
from lpdsl.validation import wide_float

#: Rounds of active-set completion in a certificate (see :func:`certify_stage`).
COMPLETION_ROUNDS = 3
#: The primal test's allowance for the rounding of ``D A x - D b``, in ulps of ``|x| + |D b|``
#: (see :func:`primal_tol`); the recession test's threshold on ``D A d`` for a unit ``d``.
ROUNDING_ULPS = 64
#: An OPTIMAL or UNBOUNDED verdict must also hold, within this many times ``tol``, relative to
#: each row's and each column's own terms in the LP's units (:func:`holds_in_terms`); a row's
#: terms count as at least this fraction of the item's largest row's.
TERMS_FACTOR = 1e3
TERMS_FLOOR = 1e-2
SIGN_SHARE = 1e-3
#: Rounds of :func:`_improvable`'s path: each adds the rows tight at ``x`` that stop the
#: move at once, or takes a segment and adds the row that ends it.
PATH_ROUNDS = 64
#: :func:`_improvable`'s path ends each segment this many ulps of ``|x|`` past the row that
#: stops it, so that the continuation sees that row violated.
PAST_ULPS = 8
#: A move of :func:`_improvable` changes the set's rows by at most this fraction of its
#: largest coordinate (the shifted projection's leak; ~1e-14 along a null space, 1 at a vertex).
NULL_LEAK = 1e-5


def primal_tol(P: Scaled, x: torch.Tensor, tol: float) -> torch.Tensor:
    """Each row's allowance ``(k, m)``: ``tol min(1, |D b|) + ROUNDING_ULPS eps (t_i + |D b_i|)``
    with ``t_i = min(sum_j |(D A)_ij x_j|, |x|)``: relative to the LP's own length scale (the
    farthest unit row from the origin; 1 when ``b = 0``, a cone) where that is below 1, plus
    the rounding of the row's own terms ``(D A x)_i - (D b)_i``.

    Under ``tol (1 + |x|)`` an F-beta model with beta = 1e4 (a row of norm 2e8, so ``D b =
    5e-9``, and ``x ~ 5e-9``) was certified at a point violating that row by 12 % of ``D b``.
    Never above ``1``: with ``|D b|`` itself, far rows loosened the test, and a float32
    equality LP (``bench_statuses.py --seed 3 --float32``) was certified 4e-4 off. ``|x|``
    enters only through the rounding, and per row: under ``tol (min(1, |D b|) + |x|)`` an LP
    whose optimum lies far out was certified at points violating rows outside the active set
    by ``tol |x|`` (a random LP translated by ``|s| = 1e6`` in ``c``'s null space: 3.8257
    against 3.8354), and with one allowance ``eps (|x| + |D b|)`` for all rows a far inactive
    row loosened every other (``x_1 <= 1, x_1 >= 1 + 1e-8, x_2 <= 1e6``: OPTIMAL; float32
    arithmetic: rows violated by 1e-3 at ``|x| = 8``). Both found by helpers' probes, eleventh
    pass."""
    base, rounding = _primal_parts(P, x, tol)
    return base + rounding


def _primal_parts(P: Scaled, x: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`primal_tol` as its two parts (:func:`row_allowance`)."""
    return row_allowance(P.bs, P.ops.abs_matvec(x.abs()), x, tol, P.length)


def row_allowance(
    bs: torch.Tensor,
    abs_ax: torch.Tensor,
    x: torch.Tensor,
    tol: float,
    length: torch.Tensor | None = None,
    top: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`primal_tol` from the scaled ``D b`` and ``|D A| |x|`` (and ``D b``'s
    :func:`length_scale` and ``max |x|`` ``(k, 1)``, where they are known), as its two parts:
    ``tol`` times the length scale, and each row's rounding."""
    scale = (length_scale(bs) if length is None else length).unsqueeze(-1)
    top = x.abs().amax(-1, keepdim=True) if top is None else top
    terms = torch.minimum(abs_ax, top)
    return tol * scale, ROUNDING_ULPS * torch.finfo(x.dtype).eps * (terms + bs.abs())


def certify(P: Scaled, x: torch.Tensor, v: torch.Tensor, tol: float) -> tuple[torch.Tensor, ...]:
    """Per item: is ``(x, v)`` an optimal pair within ``tol``? Also the primal check alone,
    the dual checks (:func:`_dual_ok`) alone, whether ``v`` is stationary to rounding (of
    the columns' scale; and of their own terms too), and the residuals ``D(A x - b)`` with
    each row's rounding (:func:`row_allowance`)."""
    x_abs = x.abs()  # (|x| and its largest entry serve both tests)
    ax, terms = P.ops.row_terms(x, x_abs)
    r = ax - P.bs  # (P.residual(x))
    top = x_abs.amax(-1, keepdim=True)
    base, rounding = row_allowance(P.bs, terms, x, tol, P.length, top)
    p_ok = (r <= base + rounding).all(-1)
    if x.shape[-1] == 0:
        p_ok = torch.ones_like(p_ok)
    d_ok, exact, settled = _dual_ok(P, x, v, tol, top.squeeze(-1))
    return p_ok & d_ok, p_ok, d_ok, exact, settled, r, rounding


def _dual_ok(
    P: Scaled, x: torch.Tensor, v: torch.Tensor, tol: float, top: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per item: is ``v`` nonnegative and stationary, with a zero gap at ``x``, within
    ``tol``? (The penalty dual is judged by this alone: the primal test depends on ``x``
    only, which the two duals share.) Also: is it stationary and nonnegative to rounding
    (``ROUNDING_ULPS`` of each column's scale and of ``max |v_s|``), and is it, besides,
    stationary to the rounding of each column's own terms (:func:`_column_rounding`), so
    that :func:`_improvable` has nothing to look for? (A cost of 1e-14 alone in its column,
    beside costs ~1, is rounding to the column's scale, yet along a bound 1e10 away it is
    worth 1e-4.) ``top``: ``max |x|`` per item, where the caller has it."""
    vs = v / (P.D * P.gamma[:, None])  # dual of the scaled problem
    vs_abs, cs_abs = vs.abs(), P.cs.abs()
    vmax = vs_abs.amax(-1).clamp_min(1.0)
    vmin = vs.amin(-1)
    nonneg = vmin >= -tol * vmax
    g, scale = _reduced_cost(P, v, vmax, cs_abs)
    res = g.abs()
    stat = (res <= tol * scale).all(-1)
    ulps = ROUNDING_ULPS * torch.finfo(res.dtype).eps
    exact = (res <= ulps * scale).all(-1) & (vmin >= -ulps * vmax)
    settled = exact & (res <= _column_rounding(P, vs_abs, cs_abs)).all(-1)
    cx, bv = _objectives(P, x, v)
    gap = (cx + bv).abs() <= tol * (_length_floor(P, x, top) + cx.abs() + bv.abs())
    return nonneg & stat & gap, exact, settled


def _length_floor(P: Scaled, x: torch.Tensor, top: torch.Tensor | None = None) -> torch.Tensor:
    """The gap test's floor, and the shortest move :func:`_improvable` counts: the LP's length
    scale or the point's ``max |x|`` (``top``, where known), whichever is longer, at most 1."""
    top = x.abs().amax(-1) if top is None else top
    return torch.maximum(P.length, top).clamp_max(1.0)


def _reduced_cost(
    P: Scaled, v: torch.Tensor, vmax: torch.Tensor, cs_abs: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(A^T v + c) / gamma`` and each column's scale, ``max(1, |v_s|) max(max_i |(D A)_ij|,
    |c_j| / gamma)``: the stationarity test compares them column by column, against the scale
    of the column's own terms. Against ``|c|`` alone, a wrong-signed reduced cost on a column
    of entries ~1e-10 (after row scaling) passed, and a suboptimal point was certified
    (column scales 10^+-5: 3 of 300 random LPs, errors up to 4e-6; 10^+-6: up to 100 %).
    ``cs_abs``: ``|c| / gamma``, where the caller has it."""
    g = (P.ops.rmatvec(v / P.D) + P.c) / P.gamma[:, None]
    cs_abs = P.cs.abs() if cs_abs is None else cs_abs
    return g, vmax[:, None] * torch.maximum(P.colmax, cs_abs)


def _column_rounding(P: Scaled, vs_abs: torch.Tensor, cs_abs: torch.Tensor) -> torch.Tensor:
    """The rounding of :func:`_reduced_cost`'s ``g`` ``(k, n)`` at the scaled dual ``vs``
    (``vs_abs = |vs|``, ``cs_abs = |c| / gamma``): ``ROUNDING_ULPS`` ulps of each column's own
    terms, ``|D A|^T |vs| + |c| / gamma``."""
    ulps = ROUNDING_ULPS * torch.finfo(vs_abs.dtype).eps
    return ulps * (P.ops.abs_rmatvec(vs_abs) + cs_abs)


def _objectives(P: Scaled, x: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``c.x`` and ``b.v_+`` in units of ``|c|``: the gap test's two sides."""
    return (P.c * x).sum(-1) / P.gamma, (P.b * v.clamp_min(0.0)).sum(-1) / P.gamma


def _penalty_dual(P: Scaled, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``relu(r) / eps`` in the original row units: stationary wherever the stage converged."""
    return (P.gamma / eps)[:, None] * P.D * torch.relu(P.residual(y))


def certify_stage(
    P: Scaled,
    y: torch.Tensor,
    viol: torch.Tensor,
    eps: torch.Tensor,
    tol: float,
    solve: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """Recover ``(x, dual)`` from the active set ``viol`` at ``y`` and certify them.

    The least-squares dual is tried first, the penalty dual ``relu(r) / eps`` only where that
    fails (degenerate items). On a degenerate optimum some rows are active at the solution but
    satisfied, by O(eps), at the penalty minimiser: the correction onto ``viol`` then violates
    them by O(eps) while the dual already certifies. Such items are *completed*: the rows the
    recovered point violates join the active set and the recovery is repeated (at most
    ``COMPLETION_ROUNDS`` times), as long as the least-squares or the penalty dual passes the
    dual checks (completion can make the least-squares dual of a degenerate system negative
    while the penalty dual, fixed by ``y``, stays feasible). Returns ``x``, the dual (original
    row units), whether it is the least-squares one, the certificate flags, the active set
    used, and :func:`_improvable`'s moves for the items it refused (``None`` where none).
    """
    active = viol  # copied before it is first changed (most certificates never change it)
    x, v_s = recover(P.ops, active.to(y.dtype), P.bs, P.c, y, solve)  # on the scaled rows
    v = P.D * v_s
    ok_ls, p_ok, d_ok, _, settled_ls, r, rounding = certify(P, x, v, tol)
    for _ in range(COMPLETION_ROUNDS):
        # An inconsistent active set (the parallel rows x >= 0 and x >= 1e-10, both violated
        # at the penalty minimiser) has its least-squares point between its rows, violating
        # some by up to half their gap, which the allowance let through: x = 5e-11, OPTIMAL
        # (a fuzzing helper, 21st pass). The rows that point leaves slack beyond rounding,
        # parallel to a row it violates, leave the set, and the point recovered without them
        # replaces it where it certifies. (Only parallel ones: two rows 5e-9 apart in angle
        # meeting at a vertex leave least-squares residuals of ~1e-9, and dropping one moved
        # x by 0.6, its gradient 100 % off: a verifying helper.)
        over = active & (r > rounding)
        if not bool(over.any()):  # (the common case: every active row met to rounding)
            break
        slack = active & (r < -rounding)
        split = slack.any(-1) & over.any(-1)
        if not bool(split.any()):
            break
        si = split.nonzero().squeeze(1)
        Ps = P.take(si)
        # (Not every slack row where the set has more rows than variables: that mended x0, x1
        # >= 0 with x0 + x1 >= 1e-10 at c = (1, 1) only, and moved fans of rows through an
        # ill-conditioned vertex to a box corner, x 9.7 off, still OPTIMAL: verifying helpers.)
        slack_s = _parallel_to(Ps, slack[si], over[si])
        split_s = slack_s.any(-1)
        if not bool(split_s.any()):
            break
        si, Ps, slack_s = si[split_s], Ps.take(split_s.nonzero().squeeze(1)), slack_s[split_s]
        act_s = active[si] & ~slack_s
        xs, vs_s = recover(Ps.ops, act_s.to(y.dtype), Ps.bs, Ps.c, y[si])
        vs = Ps.D * vs_s
        ok_s, p_s, d_s, _, settled_s, r_s, rounding_s = certify(Ps, xs, vs, tol)
        if not bool(ok_s.any()):
            break
        ti = si[ok_s]
        active = active.clone() if active is viol else active
        active[ti], x[ti], v[ti], r[ti], rounding[ti] = (
            t[ok_s] for t in (act_s, xs, vs, r_s, rounding_s)
        )
        ok_ls[ti], p_ok[ti], d_ok[ti] = ok_s[ok_s], p_s[ok_s], d_s[ok_s]
        settled_ls[ti] = settled_s[ok_s]
    v_pen = pen_ok = settled_pen = None  # the penalty dual and its dual checks, where needed
    every_ls = bool(ok_ls.all())
    if not every_ls:  # it may certify where the least-squares one does not
        v_pen = _penalty_dual(P, y, eps)
        pen_ok, _, settled_pen = _dual_ok(P, x, v_pen, tol)
    # (where every least-squares pair certified, every point is feasible: nothing to complete)
    for _ in range(0 if every_ls else COMPLETION_ROUNDS):
        redo = (d_ok if pen_ok is None else d_ok | pen_ok) & ~p_ok
        if not bool(redo.any()):
            break
        ri = redo.nonzero().squeeze(1)  # usually a few items: recover only those
        xr, Pr = x[ri], P.take(ri)
        new = (Pr.residual(xr) > primal_tol(Pr, xr, tol)) & ~active[ri]
        grew = new.any(-1)  # an item whose set did not grow would recover the same point
        if not bool(grew.all()):
            if not bool(grew.any()):
                break
            ri, new = ri[grew], new[grew]
            Pr = P.take(ri)
        active = active.clone() if active is viol else active
        active[ri] = active[ri] | new
        xr, vr_s = recover(Pr.ops, active[ri].to(y.dtype), Pr.bs, Pr.c, y[ri])
        x[ri], v[ri] = xr, Pr.D * vr_s
        ok_r, p_r, d_r, _, settled_r, _, _ = certify(Pr, xr, v[ri], tol)
        ok_ls[ri], p_ok[ri], d_ok[ri], settled_ls[ri] = ok_r, p_r, d_r, settled_r
        if pen_ok is not None:
            pen_ok[ri], _, settled_pen[ri] = _dual_ok(Pr, xr, v_pen[ri], tol)
    ok, settled = ok_ls, settled_ls
    if pen_ok is not None:  # else every least-squares dual certified, and completion kept them
        v = torch.where(ok_ls[:, None], v, v_pen)
        ok = ok_ls | (p_ok & pen_ok)
        settled = torch.where(ok_ls, settled_ls, settled_pen)
    jump = None
    if bool((ok & ~settled).any()):  # a reduced cost beyond rounding: can a move lower c.x?
        far, jump = _improvable(P, x, v, active, ok & ~settled, tol)
        ok = ok & ~far
    return x, v, ok_ls, ok, active, jump


def _parallel_to(P: Scaled, rows: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Per item, which of ``rows`` ``(k, m)`` have the unit normal of one of ``others`` to
    rounding: compared through two fixed pseudo-random projections of the scaled rows (equal
    for parallel rows to rounding, ~1e-9 apart for rows 1e-9 apart in angle). Called on the
    few items with an inconsistent active set (:func:`certify_stage`), item by item."""
    k, n = rows.shape[0], P.ops.n
    # in float64 (float32 on MPS): float32's rounding is coarser than the angle between rows
    # 2e-5 apart, which it took for parallel (a verifying helper)
    wide = wide_float(P.bs.dtype, P.bs.device)
    ops = P.ops.to(wide)
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(2, n, generator=gen, dtype=torch.float64).to(P.bs.device, wide)
    proj = torch.stack([ops.matvec(g[i].expand(k, n)) for i in range(2)], -1)
    ulps = ROUNDING_ULPS * torch.finfo(wide).eps
    level = torch.stack([ulps * ops.abs_matvec(g[i].abs().expand(k, n)) for i in range(2)], -1)
    out = torch.zeros_like(rows)
    for j in range(k):
        s, o = rows[j].nonzero().squeeze(1), others[j].nonzero().squeeze(1)
        gap = (proj[j, s].unsqueeze(1) - proj[j, o].unsqueeze(0)).abs()
        near = gap <= level[j, s].unsqueeze(1) + level[j, o].unsqueeze(0)
        out[j, s] = near.all(-1).any(-1)
    return out


def _improvable(
    P: Scaled, x: torch.Tensor, v: torch.Tensor, active: torch.Tensor, ok: torch.Tensor, tol: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Items of ``ok`` whose objective a feasible move lowers by more than the gap test allows, and
    that move (``(k, n)``, zero elsewhere; ``None`` where no item has one), from which the
    continuation goes on.

    The stationarity test lets a reduced cost ``g = A^T v + c`` through up to ``tol`` of its
    column's scale, and the value can then be off by ``g.(x* - x)``, which nothing bounds where
    the feasible set reaches far along the active rows' null space: ``min x_2 - 1e-9 x_1``, ``0
    <= x_1 <= 1e10``, ``0 <= x_2 <= 1`` was certified at ``x_1 = 1e-10``, value ~0 for -10, and
    58 of 331 random LPs with a tie-breaking cost ~1e-10 |c| and boxes ~1e7 up to 1.9e-3 off (a
    reviewing helper's fuzz, fifteenth pass). So ``g`` (beyond its rounding, ``ROUNDING_ULPS``
    ulps of each column's own terms, :func:`_column_rounding`) is projected onto the null space
    of the active rows, ``d = -(g - K A_S^T A_S g)``, and a ratio test over the other rows gives
    the longest feasible step ``t`` along ``d``. That is one segment of a path: the row that
    ends it joins ``S`` (as do rows tight at ``x`` that stop ``d`` at once), and the next
    segment goes on from ``PAST_ULPS`` ulps of ``|x|`` past it, for up to ``PATH_ROUNDS`` (a
    path that needs more segments before the one that gains is not seen: docs/solver.md §3). An
    item is improvable where a segment's gain ``-g.d t`` (``-c.d t`` in exact arithmetic)
    exceeds ``tol (min(1, sum_j |c_j x_j|) + |c.x| + |b.v|)`` (in units of ``|c|``) and its
    rounding, along a move longer than the gap test's length floor; the move returned is the
    whole path. Against ``tol (1 + ...)`` a diet LP with costs spanning nine decades was
    certified 17 % off: the move gained 3e-10 ``|c|`` where the objective's own terms were 2e-9
    ``|c|``. (Not above 1: own terms of ``|x| ~ 10`` with ``c.x`` cancelling certified
    tie-breaking LPs up to 8e-5 off. Segment by segment, not summed: 16 segments of a degenerate
    LP, none beyond the allowance, summed past it where HiGHS had the value certified.) A
    segment counts only where ``d`` holds the set's rows to ``NULL_LEAK`` of its size: at a
    vertex ``d`` is the projection's leak. A dual stationary to rounding but negative beyond it
    (within ``tol``) leaves no reduced cost to move along: those rows leave the active set, and
    ``g`` is the reduced cost of the others (a diet LP certified 100 % off, 23rd pass; only
    there: where ``g`` is not rounding, the direction without them stalled a degenerate F-beta
    batch that this one solves). docs/solver.md §3 has the measurements."""
    vs = v / (P.D * P.gamma[:, None])
    vs_abs, cs_abs = vs.abs(), P.cs.abs()
    vmax = vs_abs.amax(-1).clamp_min(1.0)
    ulps = ROUNDING_ULPS * torch.finfo(v.dtype).eps
    g, scale = _reduced_cost(P, v, vmax, cs_abs)
    # stationary to rounding of the columns' scale, with a dual of the wrong sign beyond it:
    # the move leaves those rows, along the reduced cost of the others
    stationary = (g.abs() <= ulps * scale).all(-1, keepdim=True)
    g = torch.where(g.abs() > _column_rounding(P, vs_abs, cs_abs), g, 0.0)
    leaving = (vs < -ulps * vmax[:, None]) & stationary
    if bool(leaving.any()):
        v_left = torch.where(leaving, 0.0, v)
        g_left, _ = _reduced_cost(P, v_left, vmax)
        beyond = g_left.abs() > _column_rounding(P, torch.where(leaving, 0.0, vs_abs), cs_abs)
        g = torch.where(leaving.any(-1, keepdim=True) & beyond, g_left, g)
    some = ok & (g != 0.0).any(-1)
    far = torch.zeros_like(ok)
    if not bool(some.any()):
        return far, None
    k = some.nonzero().squeeze(1)
    Pk, gk, xk, w = P.take(k), g[k], x[k], active[k] & ~leaving[k]
    slack = (Pk.bs - Pk.ops.matvec(xk)).clamp_min(0.0)
    length = _length_floor(Pk, xk)
    # beyond tol of the objective's own terms at x where they are below |c| (else of |c|), of
    # c.x and b.v, and the gain's rounding, along a move longer than the gap test's length floor
    cx, bv = _objectives(Pk, xk, v[k])
    own = (Pk.cs * xk).abs().sum(-1).clamp_max(1.0)
    allowed = tol * (own + cx.abs() + bv.abs())
    path = torch.zeros_like(xk)  # the feasible move so far, a segment a round
    far_k, going = torch.zeros_like(some[k]), torch.ones_like(some[k])
    rows = torch.arange(slack.shape[-1], device=slack.device)
    for _ in range(PATH_ROUNDS):
        wf = w.to(g.dtype)
        d = -null_part(Pk.ops, Pk.ops.hessian_solver(wf, RECOVERY_SHIFT), wf, gk)
        q = Pk.ops.matvec(d)  # unit rows: the rate at which each row's slack is used up
        dmax = d.abs().amax(-1, keepdim=True)
        rising = (q > ulps * dmax) & ~w  # (the set's rows: q is the projection's residue)
        reach = torch.where(rising, slack / torch.where(rising, q, 1.0), torch.inf)
        t, stop = reach.min(-1)
        # along the set's null space, to the projection's leak: where the set leaves none (a
        # vertex), d is that leak, whose steps of 1e34 along rows 1e-26 long claimed gains
        held = torch.where(w, q.abs(), 0.0).amax(-1) <= NULL_LEAK * dmax.squeeze(-1)
        moves = going & held & (t * dmax.squeeze(-1) > tol * length)
        # rows tight at x outside the set (a degenerate vertex) stop d at once: they join the
        # set, and g is projected again (x_0 at its bound, not in the set, kept x_1 from its
        # far bound along a cost of -1e-13: OPTIMAL 1e6 times too small, 23rd pass)
        blocking = (reach * dmax <= tol * length[:, None]) & (going & ~moves)[:, None] & ~w
        # > 0: d descends. c.d = g.d = -|P_N g|^2 in exact arithmetic; c.d also carries the
        # set's duals times the projection's residue A_S d, which a long step multiplied into a
        # gain of 8e-4 |c| along a d of 5e-19 (NMF at a degenerate optimum, 23rd pass)
        drop = -(gk * d).sum(-1)
        descends = moves & (drop > 0.0)
        gain = torch.where(descends, drop * t, 0.0)  # (an endless gain stays far)
        ahead = descends & torch.isfinite(t)
        rounding = torch.where(ahead, ulps * (gk * d).abs().sum(-1) * t, 0.0)
        far_k = far_k | (gain > allowed + rounding)
        # a segment ends on the row that stops it, which joins the set: the path goes on from
        # there (a first segment cut short by a row 4e-10 from x gained 1e-19 |c| where the next
        # gained 0.04 |c|, 24th pass); a few ulps of |x| past it, so that the continuation sees
        # that row violated (in float32 the end of a path rounded to 1.5 inside a row at x_0 =
        # 1.7e7, which then never joined the active set: MAX_ITER at the optimum, a verifying
        # helper)
        size = (xk + path).abs().amax(-1) + t * dmax[:, 0]  # |x| at the segment's end, at most
        past = PAST_ULPS * torch.finfo(t.dtype).eps * size / dmax[:, 0]
        t = torch.where(ahead, t + past, 0.0)  # (nan and inf where no segment is taken)
        path = path + t[:, None] * d
        slack = (slack - t[:, None] * q).clamp_min(0.0)
        w = w | blocking | (ahead[:, None] & (rows == stop[:, None]))
        going = blocking.any(-1) | ahead
        if not bool(going.any()):
            break
    if not bool(far_k.any()):
        return far, None
    step = torch.where(far_k[:, None], path, 0.0)
    return far.index_put((k,), far_k), torch.zeros_like(x).index_put((k,), step)


def holds_in_terms(
    op: Any,
    b: torch.Tensor,
    c: torch.Tensor,
    x: torch.Tensor,
    dual: torch.Tensor,
    tol: float,
    rows_nonzero: bool = False,
) -> torch.Tensor:
    """Per item: do ``x`` and ``dual``, certified on unit rows, also hold against each row's and
    column's own terms (docs/solver.md §4, "Every verdict is also judged against its own
    terms")? Rows ``(A x - b)_i <= TERMS_FACTOR tol a_i`` (:func:`rows_in_terms`); columns
    ``|A^T v + c|_j <= TERMS_FACTOR tol (|A|^T |v| + |c|)_j`` plus a floor of ``TERMS_FLOOR
    sum_i |A_ij| W / a_i``, ``W = sum_k |v_k| a_k`` (one product with ``|A|^T``; the larger of
    the two would take two, and is at most 2x tighter); no ``-v_i a_i`` above ``SIGN_SHARE W``.

    The certificate works on unit rows, relative to the LP's length scale: a row that one
    variable in small units dominates (coefficients ~1e9 beside ~1) is a unit vector along
    that variable, so its other terms vanish below ``tol``, and a point violating the row by
    0.38 in its own units was certified OPTIMAL 2x off (``x_0`` in units of 1e-9: 76 of 300
    random LPs wrong, infeasible ones OPTIMAL or UNBOUNDED); a reduced cost of 4e-9 on a
    column whose entries are ~1e-9, beside bound rows of scale 1, passed as rounding (8 % off
    on a transport LP in units of 1e9). Reviewing helpers' probes, seventeenth pass; a
    verifying helper's far rows and rows in other units set the floors as they are. None of
    the tests changes with a column's units. The Newton driver applies it with the
    certificate, so that an item that fails goes on with the continuation
    (:mod:`lpdsl.solvers.newton`). ``rows_nonzero``: see :func:`rows_in_terms`."""
    ok, allowed = rows_in_terms(op, b, x, tol, rows_nonzero)
    bound = TERMS_FACTOR * tol
    # a negative dual entry weighed by its row's own scale (v_i allowed_i does not change with
    # the row's units; against max|v| a rounding residue on a row in units 1e-7 failed): at
    # most SIGN_SHARE of the dual's weight (-0.18 beside 1.9 had 3 %; degenerate ties with rows
    # in units 1e±10 carry rounding of up to 2e-4 of it, rightly certified)
    weight = dual * allowed
    total = weight.abs().sum(-1, keepdim=True)
    sign_ok = (weight >= -SIGN_SHARE * total).all(-1)
    # a column's terms plus its floor: the duals its rows would carry at an even share of the
    # objective, total / allowed_i in row i's units (not max|v|, from a row in other units)
    share = TERMS_FLOOR * total / allowed.clamp_min(torch.finfo(x.dtype).tiny)
    g = op.rmatvec(dual) + c
    dual_ok = (g.abs() <= bound * (op.abs_rmatvec(dual.abs() + share) + c.abs())).all(-1)
    return ok & dual_ok & sign_ok


def rows_in_terms(
    op: Any, b: torch.Tensor, x: torch.Tensor, tol: float, rows_nonzero: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item: does ``x`` meet every row with coefficients to ``TERMS_FACTOR tol a_i``,
    ``a_i = (|A| |x| + |b|)_i`` floored at ``TERMS_FLOOR`` of the point's largest ``(|A|
    |x|)_i`` or the median nonzero ``|b_i|`` (the test of :func:`holds_in_terms`, and of an
    UNBOUNDED item's point)? Also the floored terms ``a``. ``rows_nonzero``: the caller knows
    that every row's ``op.row_sq_norms()`` is positive (the scaling found none below
    ``tiny``), so that none is left out and the norms need not be formed again."""
    bound = TERMS_FACTOR * tol
    # a row without coefficients is the driver's (its b...)
    real = None if rows_nonzero else op.row_sq_norms() > 0.0
    ax, at_x = op.row_terms(x)
    b_abs = b.abs()
    # the rows' floor: the point's largest terms, or the typical |b_i| (x at 0); not the
    # largest |b_i|: one far row, x_1 <= 1e9 beside rows of ~1, let every row be violated
    # by ~10 (a reviewing helper's probe). NaN where no row with coefficients has b_i != 0
    counted = b_abs > 0.0 if real is None else real & (b_abs > 0.0)
    typical = torch.where(counted, b_abs, torch.nan).nanmedian(-1, True).values
    allowed = torch.maximum(
        at_x + b_abs, TERMS_FLOOR * torch.fmax(at_x.amax(-1, keepdim=True), typical)
    )
    r = ax - b
    r = r if real is None else torch.where(real, r, -torch.inf)
    cone = typical.isnan()  # no length scale: the certificate's is 1, so x ~ 1e-29 is 0 there
    if bool(cone.any()):
        rounding = ROUNDING_ULPS * torch.finfo(x.dtype).eps * op.row_sq_norms().sqrt()
        r = r - cone * rounding
    ok = (r <= bound * allowed).all(-1)
    return ok, allowed
