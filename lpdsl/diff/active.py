"""Primal and dual recovery from the active set, differentiable in ``A``, ``b`` and ``c``.

Paper §3.2: after the Newton iterations the rows with a positive penalty dual
``relu(Ay - b) / eps`` are the active constraints, and the primal solution solves the active
system ``A_S x = b_S``. We take the minimum-norm correction of the penalty minimiser ``y``
onto that affine set (exact when the optimum is a nondegenerate vertex, a well-defined
choice on a degenerate or non-unique face), through the regularised normal equations

    x = y + (A_S^T W A_S + delta I)^{-1} A_S^T W (b_S - A_S y),

with ``W`` the squared row scaling (a weighting only: the solution of a consistent system
does not depend on it) and row masks instead of ragged gathers, so one batched solve of the
same structure as the Newton step serves every item. The dual is the least-squares solution
of ``A_S^T v_S = -c``, ``v_S = -W A_S (A_S^T W A_S + delta I)^{-1} c``. Iterative
refinement (iterated Tikhonov) removes the bias of ``delta``. ``y`` enters detached; ``A``,
``b``, ``c`` enter live in :func:`refine_live`, one more step from the recovered pair whose
backward applies ``(A_S^T W A_S)^+`` exactly: autograd gets the derivatives of the active-set
solution (``docs/solver.md`` §7).

The value is returned as ``c.x`` plus the zero-valued Lagrangian correction
``L - L.detach()`` with ``L = c.x + v.(A x - b)`` (``x``, ``v`` detached), whose gradient is
exactly the envelope theorem's (SPEC §3): d value/d b = -dual, d value/d c = x,
d value/d A = dual x^T.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lpdsl.solvers.linalg import CGSolver, Operator, PerItemFunction, Solver
from lpdsl.validation import detached, vmapped

#: Tikhonov shift of the recovery systems (rows are scaled to unit norm by ``W``).
#: Smaller shifts amplify the Cholesky rounding into the null space of ``A_S`` (measured on
#: wide systems with zero columns: 3e-4 at 1e-11, 2e-8 at 1e-7); the bias a larger shift puts
#: on the range is removed by iterative refinement (iterated Tikhonov, factor
#: ``shift / (sigma^2 + shift)`` per step).
RECOVERY_SHIFT = 1e-7
REFINE_STEPS = 5  # at most; refinement stops once its steps reach rounding level
#: The dual's refinement steps reuse the factor (cheap); badly scaled active systems
#: (netlib) need more of them to make ``A^T v = -c`` hold to the certificate's tolerance.
DUAL_REFINE_STEPS = 8
#: Refinement steps run with autograd through the shifted factor before the exact one of
#: :func:`refine_live`: they carry the second derivatives.
LIVE_REFINE_STEPS = 1
#: At most this many conjugate-gradient steps continue a refinement that did not settle
#: (:func:`_conjugate_refine`).
CONJUGATE_STEPS = 30
#: ... on the CG path, where each step is a CG solve. Without them, 2 x 2 active systems of
#: condition 7e4-7e7 ended MAX_ITER there and derivatives were 3 % off at 7e3; with 30, NMF
#: (App. A.3) took twice as long on this path (s = 24 / 32: 13.7 / 18.7 s against 6.7 /
#: 10.1), with 5 no longer (6.3 / 9.5 s), and every small case above certified exactly.
CG_CONJUGATE_STEPS = 5


def recover(
    op: Operator,
    weights: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    y: torch.Tensor,
    solve: Solver | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primal ``x`` and least-squares dual ``v`` from the active system.

    Args:
        op: a :mod:`lpdsl.solvers.linalg` operator holding ``A`` (live or detached).
        weights: ``(k, m)`` nonnegative row weights, zero off the active set (detached).
        b: ``(k, m)`` right-hand sides. c: ``(k, n)`` costs. y: ``(k, n)`` start (detached).
        solve: an existing solver of ``A^T diag(weights) A + RECOVERY_SHIFT I`` to reuse (the
            Newton step's factorisation when its pattern and shift are the same), or ``None``.

    Returns:
        ``x`` ``(k, n)`` and ``v`` ``(k, m)`` (zero off the active set; not clamped).
    """
    if solve is None:
        solve = op.hessian_solver(weights, RECOVERY_SHIFT)
    # Early steps are not tested (each test costs about half a step): the first moves y onto
    # the active set and the next removes most of the shift's bias, so they are not at
    # rounding level. Measured over the benchmark families' 45 recoveries: x settled at its
    # third step or later in 43 (the others at the second: one extra step), v at its second
    # loop step or later in all.
    exact = solve.exact  # no shift bias to refine away

    def residual(u):
        return op.rmatvec(weights * (b - op.matvec(u)))

    x = _refine_primal(op, solve, weights, residual, y, 1 if exact else REFINE_STEPS, first=2)
    v = range_dual(op, solve, weights, c, 0 if exact else DUAL_REFINE_STEPS)
    return x, v


def _refine_primal(
    op: Operator,
    solve: Solver,
    weights: torch.Tensor,
    residual: Callable[[torch.Tensor], torch.Tensor],
    u: torch.Tensor,
    steps: int,
    first: int,
) -> torch.Tensor:
    """Iterated Tikhonov on ``A^T W A u = h`` from ``u`` (``residual(u)`` is ``h - A^T W A
    u``), tested for settling from step ``first`` on, continued by conjugate gradients where
    it did not settle: :func:`recover`'s primal and :func:`range_primal`."""
    for i in range(steps):
        du = solve(residual(u))
        u = u + du
        if i >= first and _settled(du, u):
            return u
    return _conjugate_refine(op, solve, weights, residual, u, du, primal=True)


def _conjugate_refine(op, solve, weights, residual, u, last, primal):
    """Continue an unsettled refinement by conjugate gradients.

    Iterated Tikhonov reduces the error along a singular value ``sigma`` of ``W^1/2 A_S`` by
    ``delta / (sigma^2 + delta)`` per step: where ``sigma^2`` is near the shift (``sigma ~
    1e-4``; the NMF LP's active systems) that is ~0.9, and ``REFINE_STEPS`` leave the point
    off its rows by 1e-8 (the certificate fails). Conjugate gradients on ``A^T W A`` with the
    same factor as preconditioner converge in about as many steps as there are such singular
    values. ``residual(u)`` is the system's residual: primal (``primal=True``), ``u = x`` and
    ``A^T W A x = h`` (``h = A^T W b`` in :func:`recover`); dual, ``u = v = -W A z`` and
    ``A^T W A z = c``, which is inconsistent where ``c`` is not in the active rows' span; the
    result is kept only for the items whose residual it reduced (and the dual certificate
    cannot hold there anyway). Items whose last step was at rounding level are left as
    they are.
    """
    steps = _conjugate_steps(solve)
    if not steps:
        return u
    level = 100 * torch.finfo(u.dtype).eps
    live = last.abs().amax(-1) > level * u.abs().amax(-1).clamp_min(1.0)
    r0 = residual(u)
    r = r0 * live[:, None].to(r0.dtype)
    u0, zt = u, solve(r)
    p, rz = zt, (r * zt).sum(-1)
    for _ in range(steps):
        wap = weights * op.matvec(p)
        hp = op.rmatvec(wap)
        php = (p * hp).sum(-1)
        alpha = torch.where(php > 0.0, rz / php.clamp_min(torch.finfo(u.dtype).tiny), 0.0)
        alpha = torch.where(torch.isfinite(alpha), alpha, 0.0)[:, None]
        step = alpha * p if primal else -alpha * wap
        u = u + step
        r = r - alpha * hp
        if _settled(step, u):
            break
        zt = solve(r)
        rz_new = (r * zt).sum(-1)
        beta = torch.where(rz > 0.0, rz_new / rz.clamp_min(torch.finfo(u.dtype).tiny), 0.0)
        p, rz = zt + beta[:, None] * p, rz_new
    better = residual(u).abs().amax(-1) < r0.abs().amax(-1)
    return torch.where((better & live)[:, None], u, u0)


def _conjugate_steps(solve: Solver) -> int:
    """How many conjugate-gradient steps may continue an unsettled refinement by ``solve``.

    ``CG_CONJUGATE_STEPS`` for the CG path's :class:`CGSolver`, where every step is itself a
    CG solve; none for an exact solver (``BatchedSolver.exact``); else (a shifted
    factorisation) ``CONJUGATE_STEPS``."""
    if isinstance(solve, CGSolver):
        return CG_CONJUGATE_STEPS
    return 0 if solve.exact else CONJUGATE_STEPS


def range_dual(
    op: Operator,
    solve: Solver,
    weights: torch.Tensor,
    c: torch.Tensor,
    steps: int = DUAL_REFINE_STEPS,
) -> torch.Tensor:
    """``v = -W A (A^T W A)^+ c``, refined: the least-squares solution of ``A^T v = -c``.

    ``solve``: a solver of ``A^T W A + RECOVERY_SHIFT I`` for ``weights``. Used by
    :func:`recover` (the dual), by the exact backward of :func:`refine_live`, and by the
    solver's refined Farkas test (the part of a ray outside the null space of ``A_J^T``)."""
    v = -weights * op.matvec(solve(c))
    for i in range(steps):
        dv = weights * op.matvec(solve(c + op.rmatvec(v)))
        v = v - dv
        if i >= 1 and _settled(dv, v):
            break
    else:
        if steps:
            v = _conjugate_refine(
                op, solve, weights, lambda u: c + op.rmatvec(u), v, dv, primal=False
            )
    return v


def range_primal(
    op: Operator, solve: Solver, weights: torch.Tensor, h: torch.Tensor
) -> torch.Tensor:
    """``(A^T W A)^+ h`` for ``h`` in the range of ``A^T W A``, refined to rounding level."""

    def residual(u):
        return h - op.rmatvec(weights * op.matvec(u))

    return _refine_primal(op, solve, weights, residual, torch.zeros_like(h), REFINE_STEPS, 1)


def null_part(
    op: Operator,
    solve: Solver,
    weights: torch.Tensor,
    u: torch.Tensor,
    h: torch.Tensor | None = None,
) -> torch.Tensor:
    """``u - (A^T W A)^+ A^T W A u``: the part of ``u`` in the null space of the weighted rows
    (``h``: ``A^T W A u`` where the caller has it), refined to rounding by
    :func:`range_primal`. The solver's pinning rows and its improvability test use it."""
    if h is None:
        h = op.rmatvec(weights * op.matvec(u))
    return u - range_primal(op, solve, weights, h)


def _unit(fn, g: torch.Tensor) -> torch.Tensor:
    """``fn(g)`` for a linear ``fn``, each item scaled to a unit maximum and back.

    The refinement's settling tests compare steps with ``max(1, |value|)``: a cotangent of
    1e-10 would pass them at once, however far off."""
    with torch.no_grad():
        scale = g.abs().amax(-1, keepdim=True)
        scale = torch.where(scale > 0.0, scale, torch.ones_like(scale))
        return fn(g / scale) * scale


class _Correction(PerItemFunction):
    """A linear map of its first input with ``(op, solve, weights)`` held fixed: the last
    refinement step of :func:`refine_live`, whose backward applies ``K`` exactly."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.parts = inputs[1:]


class _PrimalCorrection(_Correction):
    """``K A^T W s`` with ``K = (A^T W A)^+`` and ``A``, ``W`` detached (:func:`refine_live`).

    Forward: one step of the shifted factor (``s`` is a fixed point's residual, so the value
    is a refinement step's). Backward: ``W A K g``, exactly, as the least-squares dual of
    ``A^T v = g`` (:func:`range_dual`), which also drops the part of ``g`` outside the range.
    Under ``create_graph`` (second derivatives) the exact ``v`` gets one zero-valued step on
    its equation with ``A`` and ``g`` live, ``v - W A K (A^T v - g)``, ``K`` applied by
    :class:`_DualCorrection` (itself differentiable the same way), whose derivatives are
    those of ``W A K g`` (implicit function theorem): without it a gradient penalty through
    ``FBetaLoss`` was 35 % off finite differences (a verifying helper); through the shifted
    factor instead of ``K`` second derivatives were 2.8e-2 off at a condition of 2e4. (Those
    whose inner derivative is w.r.t. ``A`` keep the shift's accuracy: ``docs/solver.md`` §7.)
    """

    @staticmethod
    def forward(s, op, solve, weights):
        return solve(op.rmatvec(weights * s))

    @staticmethod
    def backward(ctx, g):
        op, solve, weights = ctx.parts
        fixed = op.detach()
        v = _unit(lambda u: range_dual(fixed, solve, weights, -u), g)
        if torch.is_grad_enabled():  # create_graph: one Newton step on A^T v = g (see above)
            step = _DualCorrection.apply(op.rmatvec(v) - g, op, solve, weights)
            v = v + (step - step.detach())
        return v, None, None, None


class _DualCorrection(_Correction):
    """``-W A K q`` with ``K = (A^T W A)^+`` and ``A``, ``W`` detached (:func:`refine_live`).

    Forward: one step of the shifted factor. Backward: ``-K A^T W g``, exactly, by
    refinement of a consistent system (:func:`range_primal`), and under ``create_graph`` one
    zero-valued step ``u - K A^T W (A u + g)`` (by :class:`_PrimalCorrection`) as there.
    """

    @staticmethod
    def forward(q, op, solve, weights):
        return -weights * op.matvec(solve(q))

    @staticmethod
    def backward(ctx, g):
        op, solve, weights = ctx.parts
        fixed = op.detach()
        u = -_unit(lambda w: range_primal(fixed, solve, weights, fixed.rmatvec(weights * w)), g)
        if torch.is_grad_enabled():  # create_graph: one Newton step on A^T W (A u + g) = 0
            step = _PrimalCorrection.apply(op.matvec(u) + g, op, solve, weights)
            u = u - (step - step.detach())
        return u, None, None, None


def refine_live(
    op: Operator,
    solve: Solver,
    weights: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    x0: torch.Tensor,
    v0: torch.Tensor,
    primal: bool = True,
    dual: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-derive a recovered pair ``(x0, v0)`` with ``A``, ``b``, ``c`` live, for autograd.

    Refinement steps of :func:`recover` from the converged, detached pair: first
    ``LIVE_REFINE_STEPS`` through the shifted factor ``S = (A^T W A + delta I)^-1`` with
    plain autograd, then one

        x <- x + K A^T W (b - A x),        v <- v - W A K (c + A^T v),

    with ``K = (A^T W A)^+`` of the detached active system. At the fixed point the
    residuals vanish, so the derivatives of ``K`` (and of the inner ``A``) drop out, and
    autograd gets those of the active-set solution, ``dx = K A^T W (db - dA x)``
    (``A_S^-1 (db_S - dA_S x)`` at a nondegenerate vertex) and ``dv = -W A K (dc + dA^T v)``,
    without differentiating a factorisation. The last step applies ``K`` by ``S`` in the
    forward (the value is a refinement step's: ``(x0, v0)`` up to rounding) and exactly in
    the backward (:class:`_PrimalCorrection`, :class:`_DualCorrection`): the derivative of a
    step through ``S`` alone is off by ``delta / (sigma^2 + delta)`` per step, and two such
    steps were 91 % off at a condition of 1e5 (``docs/solver.md`` §7). The shifted steps
    before it make ``x`` and ``v`` live where the exact step's gradient formula uses them,
    which second derivatives need. An exact solver (``BatchedSolver.exact``: no shift on the
    range) is ``K`` itself: plain autograd through one step.

    ``x`` depends on ``A`` and ``b`` only, ``v`` on ``A`` and ``c`` only: ``primal=False``
    (``dual=False``) returns ``x0`` (``v0``) detached, for callers whose data that half does
    not depend on (the AUC model's ``A`` and ``c`` are constants).
    """
    x, v = detached(x0), detached(v0)
    exact = solve.exact
    for _ in range(1 if exact else LIVE_REFINE_STEPS):
        if primal:
            x = x + solve(op.rmatvec(weights * (b - op.matvec(x))))
        if dual:
            v = v - weights * op.matvec(solve(c + op.rmatvec(v)))
    if not exact:
        if primal:
            x = x + _PrimalCorrection.apply(b - op.matvec(x), op, solve, weights)
        if dual:
            v = v + _DualCorrection.apply(c + op.rmatvec(v), op, solve, weights)
    return x, v


def _settled(step: torch.Tensor, value: torch.Tensor) -> bool:
    """Refinement has converged for every item (the step is at rounding level).

    Under ``torch.vmap`` (``jacrev`` vmaps the backward of :func:`refine_live`'s corrections
    over its cotangents) a tensor cannot steer control flow: the loops then run their full
    length, which only costs time.
    """
    if vmapped(step) or vmapped(value):
        return False
    with torch.no_grad():
        scale = value.abs().amax(-1).clamp_min(1.0)
        level = 100 * torch.finfo(step.dtype).eps  # 2e-14 in float64
        return bool((step.abs().amax(-1) <= level * scale).all())


def envelope_value(
    op, b: torch.Tensor, c: torch.Tensor, x: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``c.x`` whose gradient in ``(A, b, c)`` is the envelope theorem's (see module doc)."""
    xd, vd = detached(x), detached(v)
    cx = (c * xd).sum(-1)  # (its value is the value's; c.x's gradient comes from lagrangian's)
    lagrangian = cx + (vd * (op.matvec(xd) - b)).sum(-1)
    return detached(cx) + (lagrangian - lagrangian.detach())
