"""Backward by unrolling Newton iterations at the final penalty parameter (paper §3.2, App. A.4).

Each Newton step ``y <- y - lam (A^T D_act A + rho I)^{-1} grad g(y)`` is a differentiable
"sublayer" in ``A``, ``b``, ``c``: the active-row indicator is piecewise constant (zero
derivative almost everywhere, paper Remark 4 and App. B.3) and the exact step length is
taken as a constant. Starting from the converged (detached) iterate, a few steps reproduce
the implicit derivative of the penalty minimiser ``y_eps(A, b, c)``, which approaches that of
the LP solution as ``eps -> 0``.
"""

from __future__ import annotations

import torch

from lpdsl.solvers.linalg import Operator
from lpdsl.solvers.linesearch import line_search


def unroll(
    op: Operator,
    scale: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    gamma: torch.Tensor,
    rho: float,
    steps: int,
    settle: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``steps`` Newton iterations with autograd on; return ``y`` and its penalty dual.

    Args:
        op: operator holding the live ``A``. scale: ``(k, m)`` or ``(1, m)`` row scaling ``D``.
        b, c: live data ``(k, m)``, ``(k, n)``. y: ``(k, n)`` detached start.
        eps: ``(k,)`` penalty parameters (> 0). gamma: ``(k,)`` cost scaling ``||c||``.
        rho: Hessian shift. steps: number of unrolled iterations.
        settle: iterations run first without autograd, for a ``y`` from lower precision:
            a float32 iterate's rounding exceeds the ``eps``-sized violations of the tight
            rows, and the taped steps started there wandered between active sets.

    Returns:
        ``y`` after the steps, the penalty dual ``gamma D relu(D(Ay - b)) / eps`` ``(k, m)``,
        and ``(k,)`` whether the rows violated at ``y`` are those the last step's Hessian
        weighted, and linearly independent. Where not, ``y`` is not the penalty minimiser of
        one active set and its derivative is not ``y_eps``'s; or the dual is not unique, and
        the penalty dual's derivative grows as ``1/eps`` along the rows' dependence (``d
        dual/db`` 4.3e7 where it is 0 on a degenerate max-flow LP: a verifying helper,
        twentieth pass).
    """
    cs = c / gamma[:, None]

    def step(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = scale * (op.matvec(y) - b)
        act = r > 0.0
        grad = op.rmatvec(scale * torch.relu(r)) + eps[:, None] * cs
        d = -op.hessian_solver((scale * scale * act.to(r.dtype)).detach(), rho)(grad)
        with torch.no_grad():
            q = scale * op.matvec(d)
            lam, _ = line_search(r, q, eps * (cs * d).sum(-1))
        return y + lam[:, None] * d, act

    with torch.no_grad():
        for _ in range(settle):
            y, _ = step(y)
    act = torch.zeros_like(b, dtype=torch.bool)
    for _ in range(steps):
        y, act = step(y)
    r = scale * (op.matvec(y) - b)
    dual = (gamma / eps)[:, None] * scale * torch.relu(r)
    return y, dual, ((r > 0.0) == act).all(-1) & _independent(op, scale, act, rho)


#: Rows count as independent where the projection of a fixed vector on them onto their range
#: keeps all but this share of it.
INDEPENDENT_LOSS = 1e-3


def _independent(op: Operator, scale: torch.Tensor, act: torch.Tensor, rho: float) -> torch.Tensor:
    """``(k,)`` whether the rows ``act`` of ``D A`` are linearly independent: a vector ``u``
    on them is its own projection onto their range, ``D A_S (A_S^T D^2 A_S + rho I)^-1
    A_S^T D u`` (to ``rho / sigma_min^2``), and loses its part in their dependence."""
    with torch.no_grad():
        w = act.to(scale.dtype)
        u = w * (1.0 + torch.arange(w.shape[-1], device=w.device, dtype=w.dtype) % 7)
        solve = op.hessian_solver(scale * scale * w, rho)
        p = w * scale * op.matvec(solve(op.rmatvec(scale * u)))
        return (p - u).norm(dim=-1) <= INDEPENDENT_LOSS * u.norm(dim=-1)
