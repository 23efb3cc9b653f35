"""Forward+backward time of each metric loss: lpdsl vs the same LP through cvxpylayers.

For every case the same model is solved by both: lpdsl's loss (DSL -> compiler -> Newton
backend, compiled model cached by shape, so the timed steps do no symbolic work) and a
:class:`cvxpylayers.torch.CvxpyLayer` of the same LP (the ratio metrics after the same
Charnes–Cooper transform, since CVXPY layers take no ratios), with the faster of
cvxpylayers' default solver and Clarabel. One run prints a table with the ratio
``peer / lpdsl`` (> 1: lpdsl is faster) and the targets of issue 4:

* AUC 32x32 pairs: ratio >= 5;  AUC 128x128 pairs: lpdsl under 1 s;
* each ratio loss at batch 64: ratio >= 2.

It also measures the two ways of serving minibatches of varying class balance to the AUC
loss: a model per ``(P, N)`` (the library's choice) against one padded ``(n, n)`` model with a
pair mask, and the one-off compile time of a new shape.

Usage::

    python benchmarks/bench_metrics.py            # full table
    python benchmarks/bench_metrics.py --quick    # fewer repetitions, smaller peers

Timings use one torch thread by default (``--threads``): on a shared 2-core machine, torch's
OpenMP threads spin against each other and a 65x65 matrix product can take 50x longer.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import timing
import torch
from timing import best_time, best_times, peer_solvers

import lpdsl as lp
from lpdsl.metrics import (
    AUCLoss,
    FBetaLoss,
    JaccardLoss,
    PrecisionAtRecallLoss,
    RecallAtPrecisionLoss,
)
from lpdsl.metrics.ratio import RatioMetricLoss

# --------------------------------------------------------------------------------------------
# peers: the same LPs as cvxpylayers layers


def auc_peer(n_pos: int, n_neg: int, margin: float) -> Any:
    """LP (2) in CVXPY with parameters ``pos (P,)`` and ``neg (N,)``."""
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    pos = cp.Parameter(n_pos)
    neg = cp.Parameter(n_neg)
    z = cp.Variable((n_pos, n_neg), nonneg=True)
    gap = cp.reshape(pos, (n_pos, 1), order="C") @ np.ones((1, n_neg)) - np.ones(
        (n_pos, 1)
    ) @ cp.reshape(neg, (1, n_neg), order="C")
    prob = cp.Problem(cp.Minimize(cp.sum(z)), [z >= margin - gap])
    return CvxpyLayer(prob, parameters=[pos, neg], variables=[z])


def auc_peer_step(layer: Any, scores: torch.Tensor, n_pos: int, margin: float, solver_args: dict):
    def step() -> None:
        (z,) = layer(scores[:n_pos], scores[n_pos:], solver_args=solver_args)
        est = (torch.relu(margin - z) / margin).mean()
        (1 - est).backward()

    return step


def ratio_peer(loss: RatioMetricLoss, n: int) -> Any:
    """The loss's LP after Charnes–Cooper (``w = t ŷ``, ``t = 1 / den``) as a CvxpyLayer.

    The label-dependent coefficients enter as parameters (per-sample vectors), which keeps
    the problem DPP: ``max a·w + a0 t`` s.t. ``d·w + d0 t = 1``, ``rows``, ``phi t <= w <=
    (1 + phi) t``, ``0 <= w <= t``.
    """
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    w = cp.Variable(n)
    t = cp.Variable(nonneg=True)
    phi = cp.Parameter(n)
    a, d = cp.Parameter(n), cp.Parameter(n)
    a0, d0 = cp.Parameter(), cp.Parameter()
    rows = [(cp.Parameter(n), cp.Parameter()) for _ in loss.rows]
    cons = [d @ w + d0 * t == 1, cp.multiply(phi, t) <= w, w <= cp.multiply(1 + phi, t)]
    cons += [w >= 0, w <= t]
    for (r, r0), row in zip(rows, loss.rows, strict=True):
        cons.append(r @ w + r0 * t == 0 if row.sense == "==" else r @ w + r0 * t >= 0)
    prob = cp.Problem(cp.Maximize(a @ w + a0 * t), cons)
    params = [phi, a, a0, d, d0] + [p for pair in rows for p in pair]
    return CvxpyLayer(prob, parameters=params, variables=[w, t])


def ratio_peer_step(
    layer: Any, loss: RatioMetricLoss, scores: torch.Tensor, labels: torch.Tensor, solver_args: dict
):
    y = labels
    n_pos, n_neg = float(y.sum()), float((1 - y).sum())

    def per_sample(fn: Callable) -> tuple[torch.Tensor, torch.Tensor]:
        c0, c_tp, c_fp = (float(v) for v in fn(n_pos, n_neg))
        return c_tp * y + c_fp * (1 - y), torch.tensor(c0, dtype=y.dtype)

    a, a0 = per_sample(loss._num_fn)
    d, d0 = per_sample(loss._den_fn)
    rows = [v for fn, _ in loss._row_fns for v in per_sample(fn)]

    def step() -> None:
        phi = torch.tanh(scores)
        w, t = layer(phi, a, a0, d, d0, *rows, solver_args=solver_args)
        est = loss.metric_at(w / t, y)
        (1 - est).backward()

    return step


def with_peers(
    ours: Callable[[], None], make_step: Callable[[dict], Callable[[], None]], reps: int
) -> dict[str, Any]:
    """lpdsl's step and the faster of cvxpylayers' default solver and Clarabel, timed in
    alternating blocks (``timing.best_times``): ``lpdsl_s``, ``peer_s`` and the peer's ``peer``."""
    steps = {}
    for name, args in peer_solvers():
        step = make_step(args)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                step()
            steps[name] = step
        except Exception as err:  # a solver missing or failing: report, keep the other
            print(f"    (peer {name} failed: {type(err).__name__}: {str(err)[:80]})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lp_s, *peer_s = best_times([ours, *steps.values()], reps)
    row: dict[str, Any] = {"lpdsl_s": lp_s}
    if steps:
        row["peer_s"], row["peer"] = min(zip(peer_s, steps, strict=True))
    return row


# --------------------------------------------------------------------------------------------
# cases


def auc_case(n_pos: int, n_neg: int, reps: int, peer: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(n_pos * 1000 + n_neg)
    scores = torch.randn(n_pos + n_neg, generator=gen, dtype=torch.float64) * 0.02
    scores.requires_grad_()
    labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).double()
    loss = AUCLoss()
    t0 = time.perf_counter()
    loss(scores, labels).backward()
    compile_s = time.perf_counter() - t0

    def step() -> None:
        loss(scores, labels).backward()

    row = {"case": f"AUC {n_pos}x{n_neg}", "first_s": compile_s}
    if peer:
        layer = auc_peer(n_pos, n_neg, loss.margin)
        row.update(
            with_peers(step, lambda a: auc_peer_step(layer, scores, n_pos, loss.margin, a), reps)
        )
    else:
        row["lpdsl_s"] = best_time(step, reps)
    return row


def ratio_case(name: str, loss: RatioMetricLoss, n: int, reps: int, peer: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(7)
    labels = (torch.rand(n, generator=gen) < 0.5).double()
    scores = torch.randn(n, generator=gen, dtype=torch.float64) + 1.5 * (labels - 0.5)
    scores.requires_grad_()
    t0 = time.perf_counter()
    loss(scores, labels).backward()
    first = time.perf_counter() - t0

    def step() -> None:
        loss(scores, labels).backward()

    row = {"case": f"{name} n={n}", "first_s": first}
    if peer:
        layer = ratio_peer(loss, n)
        row.update(
            with_peers(step, lambda a: ratio_peer_step(layer, loss, scores, labels, a), reps)
        )
    else:
        row["lpdsl_s"] = best_time(step, reps)
    return row


def masked_auc_model(n: int, margin: float) -> Any:
    """The pad-and-mask alternative: one ``(n, n)`` model per batch size with a pair mask."""
    s = lp.Parameter(n, name="scores")
    mask = lp.Parameter((n, n), name="pair_mask")
    z = lp.Variable((n, n), name="z", nonneg=True)
    gap = s.reshape((n, 1)) - s.reshape((1, n))
    return lp.Problem(lp.Minimize(z.sum()), [z >= mask * (margin - gap)]), s, mask, z


def cache_vs_mask(n: int, steps: int) -> None:
    """Serve ``steps`` batches of size ``n`` with random class balance both ways."""
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(steps):
        labels = (torch.rand(n, generator=gen) < 0.5).double()
        batches.append((torch.randn(n, generator=gen, dtype=torch.float64), labels))
    margin = 0.01

    loss = AUCLoss(margin)
    t0 = time.perf_counter()
    for s, y in batches:
        loss(s.requires_grad_(), y).backward()
    cached = time.perf_counter() - t0
    info = loss.cache_info()
    t0 = time.perf_counter()
    for s, y in batches:
        loss(s.requires_grad_(), y).backward()
    cached_warm = time.perf_counter() - t0

    prob, *_ = masked_auc_model(n, margin)
    t0 = time.perf_counter()
    compiled = prob.compile()
    mask_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s, y in batches:
        s = s.requires_grad_()
        mask = y[:, None] * (1 - y)[None, :]
        A, b, c = compiled.standard_form(s, mask, layout="sparse")
        sol = lp.solve(A, b, c)
        (z,) = compiled.recover(sol.x).values()
        est = ((torch.relu(margin - z) / margin) * mask).sum() / mask.sum()
        (1 - est).backward()
    masked = time.perf_counter() - t0
    print(
        f"\nvarying class balance, batch {n}, {steps} steps: shape cache "
        f"{cached:.2f} s cold ({info.misses} compiles) / {cached_warm:.2f} s warm; "
        f"pad-and-mask ({n}x{n} pairs) {masked:.2f} s + {mask_compile:.2f} s compile"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--no-peer", action="store_true", help="skip cvxpylayers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reps = 3 if args.quick else 10
    if args.quick:
        timing.BUDGET_S = 0.0
    peer = not args.no_peer
    rows = []
    for n_pos, n_neg in ((8, 56), (32, 32), (64, 64), (128, 128)):
        big = n_pos * n_neg > 4096
        rows.append(auc_case(n_pos, n_neg, max(2, reps // 3) if big else reps, peer))
        print(_fmt(rows[-1]), flush=True)
    for name, loss in (
        ("F1", FBetaLoss(1.0)),
        ("F2", FBetaLoss(2.0)),
        ("Jaccard", JaccardLoss()),
        ("P@R0.8", PrecisionAtRecallLoss(0.8)),
        ("R@P0.8", RecallAtPrecisionLoss(0.8)),
    ):
        rows.append(ratio_case(name, loss, 64, reps, peer))
        print(_fmt(rows[-1]), flush=True)
    cache_vs_mask(64, 20 if args.quick else 60)
    print("\ntargets (issue 4):")
    by = {r["case"]: r for r in rows}
    if peer:
        r = by["AUC 32x32"]
        print(f"  AUC 32x32 ratio >= 5: {r['peer_s'] / r['lpdsl_s']:.1f}x")
        for r in rows[4:]:
            print(f"  {r['case']} ratio >= 2: {r['peer_s'] / r['lpdsl_s']:.1f}x")
    print(f"  AUC 128x128 under 1 s: {by['AUC 128x128']['lpdsl_s']:.3f} s")


def _fmt(r: dict[str, Any]) -> str:
    head = f"{r['case']:<16} lpdsl {r['lpdsl_s'] * 1e3:9.2f} ms (first call {r['first_s']:.2f} s)"
    if "peer_s" not in r:
        return head
    return (
        f"{head}   cvxpylayers[{r['peer']}] {r['peer_s'] * 1e3:9.2f} ms   "
        f"ratio {r['peer_s'] / r['lpdsl_s']:6.2f}x"
    )


if __name__ == "__main__":
    main()
