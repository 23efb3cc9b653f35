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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``steps`` Newton iterations with autograd on; return ``y`` and its penalty dual.

    Args:
        op: operator holding the live ``A``. scale: ``(k, m)`` or ``(1, m)`` row scaling ``D``.
        b, c: live data ``(k, m)``, ``(k, n)``. y: ``(k, n)`` detached start.
        eps: ``(k,)`` penalty parameters (> 0). gamma: ``(k,)`` cost scaling ``||c||``.
        rho: Hessian shift. steps: number of unrolled iterations.

    Returns:
        ``y`` after the steps and the penalty dual ``gamma D relu(D(Ay - b)) / eps`` ``(k, m)``.
    """
    cs = c / gamma[:, None]
    for _ in range(steps):
        r = scale * (op.matvec(y) - b)
        act = (r > 0.0).to(r.dtype)
        grad = op.rmatvec(scale * torch.relu(r)) + eps[:, None] * cs
        d = -op.hessian_solver((scale * scale * act).detach(), rho)(grad)
        with torch.no_grad():
            q = scale * op.matvec(d)
            lam, _ = line_search(r, q, eps * (cs * d).sum(-1))
        y = y + lam[:, None] * d
    r = scale * (op.matvec(y) - b)
    dual = (gamma / eps)[:, None] * scale * torch.relu(r)
    return y, dual
