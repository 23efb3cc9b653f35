"""How fast could one small LP be solved with this method in eager PyTorch? (issue 3, item 7)

The targets for *one* small instance (F-score n = 64: 2x the peer; AUC 32x32: 5x) leave
~1.7 ms for forward and backward together. This benchmark puts a floor under lpdsl's time
that no reorganisation of the eager code can beat: the number of Newton steps lpdsl needs on
the instance, times the cost of the leanest possible step (residual, generalized Hessian,
factorisation, direction, first-piece line search, update: no sort, no bookkeeping, no
certificate, no backward), on the instance's own data and structure (dense Cholesky for
F-score, a diagonal solve for AUC). The peer is cvxpylayers with Clarabel, forward and
backward, measured in the same run.

    .venv/bin/python benchmarks/bench_floor.py

Times are the minimum of repeated runs of CPU time of this thread (``time.thread_time``), so
a noisy shared machine inflates them less; one torch thread, float64.
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from families import auc_lp, fscore_lp, fscore_pattern, fscore_sparse, to_sparse
from timing import best_time, peer_solvers

import lpdsl


def _lean_dense_step(A: torch.Tensor, b: torch.Tensor, c: torch.Tensor, y: torch.Tensor, eps):
    """The fewest eager operations of one dense generalized-Newton step (paper eq. 7)."""
    r = A @ y - b
    act = r > 0
    As = A * act.unsqueeze(-1)
    H = As.T @ As
    H.diagonal().add_(1e-9)
    grad = A.T @ r.clamp_min(0.0) + eps * c
    d = torch.cholesky_solve(grad.unsqueeze(-1), torch.linalg.cholesky(H)).squeeze(-1).neg_()
    q = A @ d
    qa = q * act
    lam = -((qa * r).sum() + eps * (c @ d)) / (qa * q).sum()
    return y + lam * d


def _lean_diagonal_step(a: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, m: int, n: int):
    """The same for an ``A`` with one nonzero per row (AUC): the Hessian is a diagonal."""

    def step(b: torch.Tensor, c: torch.Tensor, y: torch.Tensor, eps):
        r = torch.zeros(m, dtype=y.dtype).index_add_(0, rows, a * y[cols]) - b
        act = r > 0
        w = a * act
        h = torch.zeros(n, dtype=y.dtype).index_add_(0, cols, w * a) + 1e-9
        grad = torch.zeros(n, dtype=y.dtype).index_add_(0, cols, a * r.clamp_min(0.0)) + eps * c
        d = -grad / h
        q = torch.zeros(m, dtype=y.dtype).index_add_(0, rows, a * d[cols])
        qa = q * act
        lam = -((qa * r).sum() + eps * (c @ d)) / (qa * q).sum()
        return y + lam * d

    return step


def _peer(prob_params_vars, args) -> float:
    from cvxpylayers.torch import CvxpyLayer

    prob, params, variables = prob_params_vars
    layer = CvxpyLayer(prob, parameters=params, variables=variables)

    def fb():
        leaves = [a.clone().requires_grad_(True) for a in args]
        (x,) = layer(*leaves, solver_args=dict(peer_solvers())["Clarabel"])
        x.sum().backward()

    return best_time(fb, 10, time.thread_time)


def main() -> None:
    import cvxpy as cp

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    rows = []

    # F-score n = 64 (paper §2.4), one instance
    n = 64
    s = torch.randn(n, generator=g, dtype=torch.float64)
    y = (torch.rand(n, generator=g) < 0.4).double()
    y[0] = 1.0
    A, b, c = fscore_lp(s, y)
    sp = fscore_sparse(s, y, fscore_pattern(n))

    def fb_fscore():
        ss = s.clone().requires_grad_(True)
        sol = lpdsl.solve(*fscore_sparse(ss, y, fscore_pattern(n)))
        sol.x[:n].sum().backward()
        return sol

    steps = int(lpdsl.solve(*sp).iterations)
    scale = 1.0 / A.norm(dim=-1, keepdim=True)  # the solver's row scaling
    As, bs, cs = A * scale, b * scale.squeeze(-1), c / c.norm()
    y0 = torch.zeros(n + 1, dtype=torch.float64)
    step = best_time(lambda: _lean_dense_step(As, bs, cs, y0, 0.1), 200, time.thread_time)
    phi, ys = cp.Parameter(n), cp.Parameter(n)
    ysum = cp.Parameter(nonneg=True)
    z, t = cp.Variable(n), cp.Variable()
    cons = [cp.sum(z) + ysum * t == 1, z <= t, z >= cp.multiply(phi, t)]
    cons += [z <= t + cp.multiply(phi, t), z >= 0, z <= 1, t >= 0]
    prob = cp.Problem(cp.Maximize(2 * ys @ z), cons)
    peer = _peer((prob, [phi, ys, ysum], [z]), (torch.tanh(s), y, y.sum()))
    rows.append(
        ("F-score n=64", 2.0, steps, step, best_time(fb_fscore, 10, time.thread_time), peer)
    )

    # AUC 32 x 32 pairs (paper eq. 2), one instance
    pos = torch.randn(32, generator=g, dtype=torch.float64) + 0.5
    neg = torch.randn(32, generator=g, dtype=torch.float64)
    A, b, c = auc_lp(pos, neg)
    Asp = to_sparse(A)

    def std(p):
        gap = (p[:, None] - neg[None, :]).reshape(-1)
        return Asp, torch.cat([gap - 0.01, torch.zeros_like(gap)]), torch.ones_like(gap)

    def fb_auc():
        pp = pos.clone().requires_grad_(True)
        sol = lpdsl.solve(*std(pp))
        sol.value.backward()
        return sol

    steps = int(lpdsl.solve(*std(pos)).iterations)
    pat = Asp.pattern
    k = pat.shape[1]
    lean = _lean_diagonal_step(Asp.values, pat.rows, pat.cols, pat.shape[0], k)
    _, bb, cc = std(pos)
    cs = cc / cc.norm()
    y0 = torch.zeros(k, dtype=torch.float64)
    step = best_time(lambda: lean(bb, cs, y0, 0.1), 200, time.thread_time)
    gap, zv = cp.Parameter(k), cp.Variable(k)
    prob = cp.Problem(cp.Minimize(cp.sum(zv)), [zv >= 0.01 - gap, zv >= 0])
    peer = _peer((prob, [gap], [zv]), ((pos[:, None] - neg[None, :]).reshape(-1),))
    lp_time = best_time(fb_auc, 10, time.thread_time)
    rows.append(("AUC 32x32", 5.0, steps, step, lp_time, peer))

    head = (
        f"{'case':<14}{'steps':>6}{'lean step us':>14}{'floor ms':>10}{'lpdsl f+b':>11}"
        f"{'peer f+b':>10}{'target ms':>11}{'floor/target':>14}"
    )
    print("one instance, float64, 1 thread, min CPU time; floor = steps x lean step (forward)")
    print(head)
    print("-" * len(head))
    for name, factor, steps, step, lp, peer in rows:
        target = peer / factor
        floor = steps * step
        print(
            f"{name:<14}{steps:>6}{1e6 * step:>14.0f}{1e3 * floor:>10.2f}{1e3 * lp:>11.2f}"
            f"{1e3 * peer:>10.2f}{1e3 * target:>11.2f}{floor / target:>14.2f}"
        )


if __name__ == "__main__":
    main()
