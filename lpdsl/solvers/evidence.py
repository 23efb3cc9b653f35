"""The evidence for INFEASIBLE and UNBOUNDED (docs/solver.md §8).

INFEASIBLE needs a Farkas ray exact to rounding (:func:`farkas` screens, :func:`farkas_refined`
proves); UNBOUNDED needs a recession direction of decrease (:func:`receding`) and a feasible
point (:func:`feasible_point`). Without such evidence an item ends MAX_ITER, never a guess.
"""

from __future__ import annotations

import torch

from lpdsl.diff.active import RECOVERY_SHIFT, range_dual, recover
from lpdsl.solvers.certificate import COMPLETION_ROUNDS, primal_tol
from lpdsl.solvers.scaling import Scaled

RECESSION_ULPS = 10
#: Iterated-Tikhonov steps of the recession test's projection: with 5 it stalled at a residual
#: of 5e-11 on ~90 nearly dependent rows, far above ``RECESSION_ULPS eps`` (an unbounded LP
#: ended MAX_ITER; a helper's probe, eleventh pass).
RECESSION_PROJECTION_STEPS = 30
#: Farkas test: ||A_s^T r|| <= FARKAS_RATIO * ||r|| (scaled rows), see docs/solver.md; in
#: lower precision at least FARKAS_ROUNDING times its machine epsilon (the rounding of A^T r).
FARKAS_RATIO = 1e-6
FARKAS_ROUNDING = 1e3
#: Recession evidence from a diverging iterate (see :func:`receding`): ``|y|`` beyond
#: ``eps_machine^-RECESSION_FAR (1 + |D b|)``, ``D A d <= tol`` and
#: ``c.d <= -RECESSION_DESCENT |c| max(D A d, eps_machine)+ / tol`` for ``d = y / |y|`` or its
#: projection onto ``{(D A d)_J = 0}`` for the rows ``J`` above ``tol`` (at most
#: ``RECESSION_ROUNDS`` rounds).
#: The exponent was 1/2 (6.7e7 in float64) before the projection: iterates along a ray with
#: zero curvature (a free variable without rows) saturated below it (|y| ~ 3e7).
RECESSION_FAR = 1.0 / 3.0
RECESSION_DESCENT = 1e-3
RECESSION_ROUNDS = 3


def farkas(P: Scaled, y: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A screen for infeasibility at ``y``: ``r = relu(D(Ay - b))`` with ``A_s^T r ~ 0``,
    ``b_s.r < 0``; the caller confirms each flag with :func:`farkas_refined`.

    Besides ``||A_s^T r|| <= FARKAS_RATIO ||r||`` (in float32 ``1e3 eps = 1.2e-4``: the rounding
    of ``A_s^T r`` alone exceeded 1e-6: 253 of 911 infeasible random LPs ended MAX_ITER, none now)
    we require ``||A_s^T r|| R < -b_s.r`` with ``R = 10 (1 + ||y||)``, which proves that no
    feasible point lies within radius ``R``. That is not infeasibility: ``R`` presumes that a
    feasible LP's iterate comes within a tenth of a feasible point, and a stalled one does not.
    ``x2 <= -0.11, -x2 + 1e-8 x1 <= -0.89, x1 <= 5e7`` (feasible for ``x1 <= -1e8``) stalled
    at ``|y| = 5``: ``|A_s^T r| = 9.1e-8 |r|`` (passing 1e-6 by 11x, yet 4e5 times the rounding)
    and ``|A_s^T r| R = 7.8e-6 (-b_s.r)``; the ray excludes only ``|x| < 7.8e6``, and the LP was
    called INFEASIBLE (as were 43 of 1,536 feasible wedges in float32 arithmetic).
    Returns the flags and the ray in the original row units (``D r``).
    """
    r = torch.relu(P.residual(y))
    nr = r.norm(dim=-1)
    atr_cols = P.ops.rmatvec(r).abs()
    atr = atr_cols.norm(dim=-1)
    br = (P.bs * r).sum(-1)
    noise = torch.maximum(10 * tol * (1.0 + P.bs.abs()), 1e-12 * y.abs().amax(-1, keepdim=True))
    big = (r > noise).any(-1)
    radius = 10.0 * (1.0 + y.norm(dim=-1))
    ratio = max(FARKAS_RATIO, FARKAS_ROUNDING * torch.finfo(r.dtype).eps)
    # ... and column by column against the column's scale: a column of entries ~1e-8 (after
    # row scaling) lets a feasible point lie ~1e8 out along it, beyond any radius from |y|;
    # an inexact ray passed the global tests there (7 of 200 feasible LPs with column
    # scales 10^+-8 were called INFEASIBLE)
    cols = (atr_cols <= ratio * nr[:, None] * P.colmax).all(-1)
    ok = big & (atr <= ratio * nr) & cols & (br < 0.0) & (atr * radius < -br)
    return ok, P.D * r / nr.clamp_min(torch.finfo(r.dtype).tiny)[:, None]


def farkas_refined(P: Scaled, y: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A Farkas ray exact to rounding: the evidence for INFEASIBLE, for an item that
    :func:`farkas` flags at a stage end or that would end MAX_ITER or UNBOUNDED.

    At an iterate far from the origin ``r = relu(D(Ay - b))`` carries the rounding of
    ``D A y`` and ``D b`` (``eps_mach |y|`` per row; and a penalty minimiser's ``A_s^T r =
    -eps c``), and :func:`farkas`'s radius test ``|A_s^T r| R < -b_s.r`` with ``-b_s.r =
    |r|^2 - (A_s^T r).y`` then needs ``|r|^2 > ~10 eps_mach |y|^2``: infeasible LPs moved to
    ``|x| ~ 1e5..1e8`` with gaps of 1e-3 ended MAX_ITER. Here ``r``, on the violated rows
    ``J``, is projected onto the null space of ``A_J^T`` (``range_dual`` of
    :mod:`lpdsl.diff.active`: iterated Tikhonov, then conjugate gradients, as recovery's
    dual) and clamped: ``r' >= 0``, ``|r'| >= |r| / 2`` (a correction of the violation, not a
    new vector). It must be exact to rounding, ``|fl(A_s^T r')| <= FARKAS_ROUNDING eps_mach
    |r'|``, also column by column against the column's entries on the ray's rows, ``|fl(A_s^T
    r')_j| <= FARKAS_ROUNDING eps_mach |r'| (|A_s|^T 1_{r' > 0})_j`` (the LP is then within a
    relative change of its rows of that size from an exactly infeasible one): at the ratio
    1e-6 a feasible LP whose rows meet only ~``1/delta`` out (``x2 <= 0, -x2 + delta x1 <=
    -1``, delta 1e-6..1e-8) was called INFEASIBLE, the iterate having stalled well inside
    ``R``. Then, with what the arithmetic
    cannot compute exactly bounded, ``|A^T D r'| <= G = | |fl(A_s^T r')| + g_m |A_s|^T r' |``
    and ``b.D r' <= B = fl(b_s.r') + g_m |b_s|.r'`` (``g_m = (m + 2) u / (1 - (m + 2) u)``,
    ``u`` the unit roundoff: the sums' and ``D``'s rounding), ``B < 0`` and ``G R < -B`` with
    ``R = 10 (1 + |y|)`` prove that no ``x`` with ``|x| <= R`` meets ``A x <= b``, since
    ``(A^T D r').x <= b.D r'``. The noise guard is ten times the primal test's allowance
    (:func:`primal_tol`) at ``y``, which follows the rounding out with ``|y|`` where
    :func:`farkas`'s ``10 tol (1 + |D b_i|)`` (1e-2 at ``|D b| = 1e6``) does not. ``P`` and
    ``y`` in float64 (float32's rounding of ``A^T r`` is 1e-4 of ``|r|``, as coarse as the
    slopes above): the Newton driver passes float32 arithmetic's items here with the data and ``y``
    taken to float64. Costs a factorisation, for the items past the noise guard only.
    Returns the flags and the ray in the original row units.
    """
    ok = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
    ray = torch.zeros_like(P.bs)
    r = torch.relu(P.residual(y))
    big = (r > 10.0 * primal_tol(P, y, tol)).any(-1)
    if not bool(big.any()):
        return ok, ray
    bi = big.nonzero().squeeze(1)
    P, y, r = P.take(bi), y[bi], r[bi]
    w = (r > 0.0).to(r.dtype)
    solve = P.ops.hessian_solver(w, RECOVERY_SHIFT)
    rp = r / r.norm(dim=-1, keepdim=True)  # unit rays: the refinement's stopping test is absolute
    # minus the least-squares solution of A_J^T v = A_J^T rp, refined to rounding level (iterated
    # Tikhonov, then conjugate gradients on a direct factorisation), as recovery's dual
    rp = rp + range_dual(P.ops, solve, w, P.ops.rmatvec(rp))
    rp = rp.clamp_min(0.0) * r.norm(dim=-1, keepdim=True)
    m = r.shape[-1]
    u = torch.finfo(r.dtype).eps / 2
    g_m = (m + 2) * u / (1.0 - (m + 2) * u)
    nr = rp.norm(dim=-1)
    atr_cols = P.ops.rmatvec(rp).abs()
    bound = (atr_cols + g_m * P.ops.abs_rmatvec(rp)).norm(dim=-1)  # >= |A^T D r'|
    br = (P.bs * rp).sum(-1) + g_m * (P.bs.abs() * rp).sum(-1)  # >= b.D r'
    kept = nr >= 0.5 * r.norm(dim=-1)
    radius = 10.0 * (1.0 + y.norm(dim=-1))
    ratio = FARKAS_ROUNDING * torch.finfo(r.dtype).eps
    exact = atr_cols.norm(dim=-1) <= ratio * nr
    # column by column against the column's entries on the ray's own rows: against its
    # largest entry on any row, x2 <= 0, -x2 + 1e-13 x1 <= -1, -x1 <= 2e13 (feasible from
    # 1e13 out; test_feasible_wedge_is_never_infeasible) passed on the bound's entry -1, a
    # row the ray (1, 1, 0) does not use (4 of 10 such LPs were INFEASIBLE, and 3 of 1,536
    # wedges whose column scales made the slope 1e-13)
    on_ray = P.ops.abs_rmatvec((rp > 0.0).to(rp.dtype))
    cols = (atr_cols <= ratio * nr[:, None] * on_ray).all(-1)
    okb = kept & exact & cols & (br < 0.0) & (bound * radius < -br)
    rayb = P.D * rp / nr.clamp_min(torch.finfo(r.dtype).tiny)[:, None]
    return ok.index_put((bi,), okb), ray.index_put((bi,), rayb)


def is_feasible(P: Scaled, y: torch.Tensor, tol: float) -> torch.Tensor:
    """``y`` meets every (unit) row ``i`` to ``tol (1 + |(D b)_i|)``.

    Row by row: against the largest ``|D b|`` a violation of 1e-3 passed in float32 next to
    bounds of 100 on another variable (an infeasible LP with a ray came out UNBOUNDED). Not
    relative to ``|y|``, nor with an allowance for the rounding of ``A y``: both passed a far
    point of an infeasible LP (float32: a violation of 0.23 at ``|y|`` = 1.7e6, after a
    feasibility stage drifted along the LP's recession cone) and made it UNBOUNDED, wrongly.
    (:func:`feasible_point` projects a feasibility stage's end onto the rows it misses.)"""
    return _meets(P, P.residual(y), tol).all(-1)


def _meets(P: Scaled, r: torch.Tensor, tol: float) -> torch.Tensor:
    """Which rows of the residuals ``r = D(A y - b)`` :func:`is_feasible` lets through."""
    return r <= tol * (1.0 + P.bs.abs())


def feasible_point(P: Scaled, y: torch.Tensor, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per item, whether a point meeting :func:`is_feasible` was found, and the point: ``y``,
    or ``y`` projected onto the rows it violates.

    The feasibility stage (``eps = 0``) ends when its violated set repeats, and the shift of
    its Newton steps can leave those rows missed by more than ``tol``: a 4x4 integer LP with a
    ray ended with ``3x_1 + x_2 + 3x_4 <= 0`` missed by 3.9e-9 (unit rows) and came out
    MAX_ITER, and so did 10 of 3,830 small unbounded integer LPs; an item's status also
    followed its batch-mates, which set how many steps the stage took (a reviewing helper,
    22nd pass). The minimum-norm correction onto the violated rows (recovery's, docs/solver.md
    §5) makes them tight to rounding; rows that it breaks join them, at most
    ``COMPLETION_ROUNDS`` times. Only for the items whose ``y`` fails, and in float64: in
    float32 arithmetic the recession test takes slopes below its rounding for rays (§8), and a
    projected point made a bounded LP UNBOUNDED that ended MAX_ITER (a verifying helper)."""
    ok = is_feasible(P, y, tol)
    if bool(ok.all()) or y.dtype != torch.float64:
        return ok, y
    fi = (~ok).nonzero().squeeze(1)
    Pf, yf = P.take(fi), y[fi]
    rows = Pf.residual(yf) > 0.0
    for _ in range(COMPLETION_ROUNDS):
        xf, _ = recover(Pf.ops, rows.to(y.dtype), Pf.bs, Pf.cs, yf)
        met = _meets(Pf, Pf.residual(xf), tol)
        okf = met.all(-1)
        new = ~met & ~rows
        if bool(okf.all()) or not bool(new.any()):
            break
        rows = rows | new
    keep = fi[okf]
    return ok.index_fill(0, keep, True), y.index_put((keep,), xf[okf])


def receding(P: Scaled, y: torch.Tensor, tol: float) -> torch.Tensor:
    """Items whose iterate ran off along a recession direction of decrease.

    An unbounded LP's penalty has no minimiser for any ``eps > 0``: the Newton iterates run
    off along ``d`` with ``A d <= 0`` and ``c.d < 0``, but the exact line search sees that ray
    only if every ``(A d)_i`` is exactly ``<= 0``, and rounding leaves some at 1e-16
    (``benchmarks/bench_statuses.py``, seeds 0-3: 284 of 698 unbounded LPs ended
    ``MAX_ITER``, their iterates at ``|y|`` of 1e11-1e29; 4 now). Called for iterates beyond
    ``eps_machine^-RECESSION_FAR (1 + |D b|)`` (6.1e4 in float64; 2.0e2 in float32); with
    ``d = y / |y|``, or that ``d`` projected onto ``{(D A d)_J = 0}`` for the rows ``J`` where
    it exceeds the threshold, it flags ``D A d <= RECESSION_ULPS eps`` (unit rows; rounding
    level, or ``tol`` if smaller) and ``c.d <= -RECESSION_DESCENT |c| max(D A d, eps)+ /
    tol``. Whatever ``d`` is tested, a bounded LP passes only with an optimal dual of ``|v|_1
    >= RECESSION_DESCENT / tol`` (``c.d = -v.(D A d) >= -|v|_1 max(D A d)+``), up to the
    rounding of ``D A d`` below ``eps``. The descent asked was ``RECESSION_DESCENT |c|``
    whatever ``D A d``, and a ray of cost under 1e-3 of ``|c|`` that the LP's rows leave at
    exactly 0 (``min 1001 x_1 + x_2``, ``|x_1| <= 1``; a shortest path with a cycle of cost
    -0.02 among arcs of 10) ended MAX_ITER (a reviewing helper, twentieth pass). The
    caller still requires a feasible point for UNBOUNDED (a pure feasibility stage from
    ``y = 0``), so an infeasible LP with such a direction ends INFEASIBLE or MAX_ITER.
    """
    # a ray's D A d <= 0 holds up to rounding, not up to tol: with tol a slope of 1/M <= tol
    # passed (x_2 <= M x_1, x_1 <= 1, max x_2: UNBOUNDED at M = 1e9 in float64 and 1e5 in
    # float32 arithmetic; a helper's probe, eleventh pass)
    unit = torch.finfo(y.dtype).eps
    tol = min(tol, RECESSION_ULPS * unit)
    tiny = torch.finfo(y.dtype).tiny

    def steep(cs: torch.Tensor, d: torch.Tensor, ad: torch.Tensor) -> torch.Tensor:
        # more descent than a bounded LP's dual of |v|_1 < RECESSION_DESCENT / tol allows
        top = ad.amax(-1).clamp_min(unit)
        return (top <= tol) & ((cs * d).sum(-1) <= -RECESSION_DESCENT * top / tol)

    d = y / y.norm(dim=-1, keepdim=True).clamp_min(tiny)
    descent = (P.cs * d).sum(-1) <= -RECESSION_DESCENT * unit / tol  # cs = c / |c|
    ad = P.ops.matvec(d)
    ok = descent & steep(P.cs, d, ad)
    # y = y_far + y_rest: the bounded part y_rest (O(|D b|), a stage's slow phase) leaves
    # D A d ~ |y_rest| / |y| on the rows it meets, above tol until |y| passes |y_rest| / tol
    # (an LP with a free variable of zero column: |y| = 1.7e9, D A d = 1.8e-9 at every stage).
    # Project d onto {(D A d)_J = 0} for the rows J above tol (growing J while others rise
    # above it) and test the projected direction by the same criteria.
    mask = (~ok) & descent
    if RECESSION_ROUNDS and bool(mask.any()):
        ii = mask.nonzero().squeeze(1)
        Pi, di, adi = P.take(ii), d[ii], ad[ii]
        rows = adi > tol
        oki = torch.zeros_like(ii, dtype=torch.bool)
        for _ in range(RECESSION_ROUNDS):
            w = rows.to(y.dtype)
            solve = Pi.ops.hessian_solver(w, RECOVERY_SHIFT)
            dp = di
            # iterated Tikhonov: the min-norm correction onto A_J d = 0
            for _ in range(RECESSION_PROJECTION_STEPS):
                dp = dp - solve(Pi.ops.rmatvec(w * Pi.ops.matvec(dp)))
            size = dp.norm(dim=-1)
            dp = dp / size.clamp_min(tiny)[:, None]
            adp = Pi.ops.matvec(dp)
            # a small correction of the direction the iterate ran off along, not a new one
            oki = (size >= 0.5) & steep(Pi.cs, dp, adp)
            new = (adp > tol) & ~rows
            if bool(oki.all()) or not bool(new.any()):
                break
            rows = rows | new
        ok = ok.index_put((ii,), oki)
    return ok
