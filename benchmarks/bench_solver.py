"""Benchmark of the Newton LP backend against cvxpylayers and scipy HiGHS (issue 3, item 7).

For each of the paper's LP families (F-score §2.4, AUC eq. 2, random dense), one instance and
a batch of 64: forward and forward+backward time of ``lpdsl.solve`` and of cvxpylayers (its
default solver and Clarabel; the faster is the peer), HiGHS forward time, the peer/lpdsl
ratio and the objective agreement with HiGHS. float64, one thread, best of repeated runs,
lpdsl's forward+backward and the peers' timed in alternating blocks (``timing.best_times``).

    .venv/bin/python benchmarks/bench_solver.py            # full table
    .venv/bin/python benchmarks/bench_solver.py --quick    # smoke run (small sizes, 1 repeat)
    .venv/bin/python benchmarks/bench_solver.py --netlib   # the netlib set, statuses and times
    .venv/bin/python benchmarks/bench_solver.py --precision  # float32 data: f64 vs f32 arithmetic

Peers get the model in its natural CVXPY form (parameters where the data enter), lpdsl gets
the compiled standard form; the sparse families as a SparseMatrix on the model's pattern.
The backward pass differentiates ``sum(w * x)`` with respect to the model's parameters.

One thread each: lpdsl runs with ``torch.set_num_threads(1)``, and cvxpylayers' batches with
``n_jobs_forward = n_jobs_backward = 1`` (``--peer-jobs``, default 1). Left at its default
(-1), diffcp solves a batch's items in a thread pool over every core: on this 2-core machine
the random 400x40 batch then took 2.1 s of wall time and 3.9 s of CPU, against 3.6 s on one
thread. The issue's own peer timings were taken on one thread; ``--peer-jobs -1`` measures
the pooled peers.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import timing
from families import (
    auc_lp,
    fscore_lp,
    fscore_pattern,
    fscore_sparse,
    netlib_lp,
    random_lp,
)
from timing import best_time, best_times, peer_solvers

import lpdsl
from lpdsl.sparse import SparseMatrix

BATCH = 64
#: Peers whose batch would take longer than this (estimated from one instance) are timed on
#: PEER_SUBSET items and scaled linearly (cvxpylayers solves the items one by one); marked *.
PEER_BUDGET_S = 30.0
PEER_SUBSET = 8


@dataclass
class Case:
    """One family at one size: builds lpdsl data and the cvxpylayers model."""

    name: str
    make_params: Callable[[int, torch.Generator], tuple[torch.Tensor, ...]]
    to_std: Callable[..., tuple]  # params -> (A or SparseMatrix, b, c) for lpdsl
    to_dense: Callable[..., tuple]  # params -> dense (A, b, c) for HiGHS
    cvx: Callable[[], tuple]  # () -> (problem, parameters, variable)
    x_slice: slice  # which entries of lpdsl's x are the cvxpy variable


def _fscore_case(n: int) -> Case:
    pattern = fscore_pattern(n)

    def make(batch, g):
        s = torch.randn(batch, n, generator=g, dtype=torch.float64)
        y = (torch.rand(batch, n, generator=g) < 0.4).double()
        y[:, 0] = 1.0
        return s, y

    def std(s, y):  # values straight on the pattern, as the compiler emits them
        return fscore_sparse(s, y, pattern)

    def cvx():
        import cvxpy as cp

        phi, yv, ysum = cp.Parameter(n), cp.Parameter(n), cp.Parameter(nonneg=True)
        z, t = cp.Variable(n), cp.Variable()
        cons = [
            cp.sum(z) + ysum * t == 1,
            z <= t,
            z >= cp.multiply(phi, t),
            z <= t + cp.multiply(phi, t),
            z >= 0,
            z <= 1,
            t >= 0,
        ]
        prob = cp.Problem(cp.Maximize(2 * yv @ z), cons)
        return prob, [phi, yv, ysum], [z]

    def cvx_args(s, y):
        return torch.tanh(s), y, y.sum(-1)

    case = Case(f"F-score n={n}", make, std, lambda s, y: fscore_lp(s, y), cvx, slice(0, n))
    case.cvx_args = cvx_args
    return case


def _auc_case(p: int, q: int) -> Case:
    def make(batch, g):
        pos = torch.randn(batch, p, generator=g, dtype=torch.float64) + 0.5
        neg = torch.randn(batch, q, generator=g, dtype=torch.float64)
        return pos, neg

    k = p * q
    eye = torch.eye(k, dtype=torch.float64)
    A_fixed = SparseMatrix.from_dense(torch.cat([-eye, -eye]))  # A does not depend on scores

    def std(pos, neg):
        gap = (pos[..., :, None] - neg[..., None, :]).reshape(*pos.shape[:-1], k)
        b = torch.cat([gap - 0.01, torch.zeros_like(gap)], -1)
        return A_fixed, b, torch.ones_like(gap)

    def cvx():
        import cvxpy as cp

        gap = cp.Parameter(p * q)
        z = cp.Variable(p * q)
        prob = cp.Problem(cp.Minimize(cp.sum(z)), [z >= 0.01 - gap, z >= 0])
        return prob, [gap], [z]

    def cvx_args(pos, neg):
        return ((pos[..., :, None] - neg[..., None, :]).reshape(*pos.shape[:-1], p * q),)

    case = Case(f"AUC {p}x{q} pairs", make, std, auc_lp, cvx, slice(0, p * q))
    case.cvx_args = cvx_args
    return case


def _random_case(m: int, n: int) -> Case:
    def make(batch, g):
        return random_lp(m, n, (batch,), generator=g)

    def cvx():
        import cvxpy as cp

        A, b, c = cp.Parameter((m, n)), cp.Parameter(m), cp.Parameter(n)
        x = cp.Variable(n)
        return cp.Problem(cp.Minimize(c @ x), [A @ x <= b]), [A, b, c], [x]

    case = Case(
        f"random {m}x{n}",
        make,
        lambda A, b, c: (A, b, c),
        lambda A, b, c: (A, b, c),
        cvx,
        slice(0, n),
    )
    case.cvx_args = lambda A, b, c: (A, b, c)
    return case


def _squeeze(params, single):
    return tuple(p[0] for p in params) if single else params


def run_case(
    case: Case,
    batch: int,
    repeats: int,
    g: torch.Generator,
    peers: bool,
    peer_single: float | None = None,
) -> dict:
    single = batch == 1
    params = _squeeze(case.make_params(max(batch, 1), g), single)

    def lp_forward():
        with torch.no_grad():
            return lpdsl.solve(*case.to_std(*params))

    def lp_fb():
        leaves = [p.clone().requires_grad_(True) for p in params]
        sol = lpdsl.solve(*case.to_std(*leaves))
        x = sol.x[..., case.x_slice]
        (x * torch.ones_like(x)).sum().backward()
        return sol

    sol = lp_forward()
    row = {"case": case.name, "batch": batch}
    row["lp_fwd"] = best_time(lp_forward, repeats)
    row["optimal"] = int((sol.status == 0).sum())
    # HiGHS forward, item by item
    from scipy.optimize import linprog

    A, b, c = case.to_dense(*params)
    n_items = 1 if single else batch
    Ad = A.expand(*b.shape[:-1], *A.shape[-2:]).reshape(n_items, *A.shape[-2:]).numpy()
    bd, cd = b.reshape(n_items, -1).numpy(), c.reshape(n_items, -1).numpy()

    def highs():
        return [
            linprog(cd[i], A_ub=Ad[i], b_ub=bd[i], bounds=(None, None), method="highs").fun
            for i in range(n_items)
        ]

    ref = np.array(highs())
    row["highs_fwd"] = best_time(highs, repeats)
    vals = sol.value.reshape(-1).numpy()
    row["err"] = float(np.max(np.abs(vals - ref) / np.maximum(1.0, np.abs(ref))))
    slow_peer = peer_single is not None and peer_single * batch > PEER_BUDGET_S
    if peers and not single and slow_peer:
        # A sequential peer this slow: time it on PEER_SUBSET items and scale linearly.
        row["lp_fb"] = best_time(lp_fb, repeats)
        steps, notes = _peer_steps(case, tuple(p[:PEER_SUBSET] for p in params))
        scale = batch / PEER_SUBSET
        # each call takes seconds, and _peer_steps has just made one
        times = best_times(list(steps.values()), 1, block=1, warmup=False)
        row.update({k: t * scale for k, t in zip(steps, times, strict=True)})
        row.update(notes, scaled=True)
    elif peers:  # lpdsl and the peers in alternating blocks: the ratio is of one stretch of time
        steps, notes = _peer_steps(case, params)
        lp_t, *peer_t = best_times([lp_fb, *steps.values()], repeats)
        row.update(zip(steps, peer_t, strict=True), lp_fb=lp_t, **notes)
    else:
        row["lp_fb"] = best_time(lp_fb, repeats)
    return row


#: diffcp's thread-pool size for the peers' batches (``--peer-jobs``; -1: every core).
PEER_JOBS = 1


def _peer_steps(case: Case, params) -> tuple[dict[str, Callable[[], None]], dict]:
    """Forward+backward steps of cvxpylayers with its default solver and with Clarabel, each
    called once; a peer that fails is left out and reported (not fatal)."""
    try:
        from cvxpylayers.torch import CvxpyLayer
    except ImportError as err:  # pragma: no cover - depends on the environment
        return {}, {"peer_note": f"cvxpylayers unavailable: {err}"}
    prob, cparams, cvars = case.cvx()
    layer = CvxpyLayer(prob, parameters=cparams, variables=cvars)
    steps, notes = {}, {}
    for name, solver_args in peer_solvers(PEER_JOBS):
        label = f"cvx_{name.lower()}"

        def fb(solver_args=solver_args):
            leaves = [p.clone().requires_grad_(True) for p in params]
            args = case.cvx_args(*leaves)
            (x,) = layer(*args, solver_args=solver_args)
            x.sum().backward()

        try:
            fb()
            steps[label] = fb
        except Exception as err:
            notes.setdefault("peer_note", f"{label}: {type(err).__name__}: {err}"[:120])
    return steps, notes


def _fmt_ms(t: float) -> str:
    return "—" if t is None or t != t else f"{1e3 * t:9.1f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-peers", action="store_true", help="skip cvxpylayers")
    ap.add_argument("--netlib", action="store_true", help="run the netlib set instead")
    ap.add_argument("--only", default="", help="run only cases whose name contains this")
    ap.add_argument(
        "--precision", action="store_true", help="float32 data: float64 vs float32 arithmetic"
    )
    ap.add_argument(
        "--peer-jobs",
        type=int,
        default=1,
        help="diffcp's threads for the peers' batches (1, like lpdsl; -1: every core)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    global PEER_JOBS
    PEER_JOBS = args.peer_jobs
    if args.netlib:
        return run_netlib()
    if args.precision:
        return run_precision(args.repeats)
    g = torch.Generator().manual_seed(0)
    if args.quick:
        cases = [_fscore_case(16), _auc_case(4, 6), _random_case(60, 8)]
        batches, repeats = [1, 4], 1
        timing.BUDGET_S = 0.0
    else:
        cases = [
            _fscore_case(64),
            _fscore_case(256),
            _auc_case(8, 56),
            _auc_case(32, 32),
            _random_case(400, 40),
            _random_case(2000, 100),
        ]
        batches, repeats = [1, BATCH], args.repeats
    head = (
        f"{'case':<20}{'batch':>6}{'lp fwd':>10}{'lp f+b':>10}{'cvx SCS':>10}{'cvx Clar':>10}"
        f"{'peer/lp':>9}{'HiGHS':>10}{'max rel err':>13}{'optimal':>9}"
    )
    print(
        "float64, torch.set_num_threads(1), ms, best of >= 5 runs (more, up to 50, while under "
        "1 s); f+b = forward+backward, lpdsl's and the peers' timed in alternating blocks; "
        f"peers' batches on {PEER_JOBS if PEER_JOBS > 0 else 'every'} thread(s) (--peer-jobs)"
    )
    print(head)
    print("-" * len(head))
    for case in cases:
        if args.only and args.only not in case.name:
            continue
        peer_single = None
        for batch in batches:
            row = run_case(case, batch, repeats, g, not args.no_peers, peer_single)
            peer = min(
                (row.get(k, float("nan")) for k in ("cvx_default", "cvx_clarabel")),
                key=lambda t: float("inf") if t != t else t,
            )
            ratio = peer / row["lp_fb"] if peer == peer else float("nan")
            if batch == 1 and peer == peer:
                peer_single = peer
            print(
                f"{row['case']:<20}{batch:>6}{_fmt_ms(row['lp_fwd']):>10}{_fmt_ms(row['lp_fb']):>10}"
                f"{_fmt_ms(row.get('cvx_default')):>10}{_fmt_ms(row.get('cvx_clarabel')):>10}"
                f"{ratio:>9.2f}{_fmt_ms(row['highs_fwd']):>10}{row['err']:>13.1e}"
                f"{row['optimal']:>6}/{batch}"
                + ("  *peers scaled from 8 items" if "scaled" in row else ""),
                flush=True,
            )
            if "peer_note" in row:
                print(f"    note: {row['peer_note']}")


def run_precision(repeats: int, batch: int = 16) -> None:
    """float32 data solved with float64 (default) and float32 arithmetic (``compute_dtype``).

    The reference is HiGHS on the float32 data (cast to float64), so rounding of the data does
    not count as error; ``tol`` is the solver's default for each arithmetic.
    """
    from scipy.optimize import linprog

    g = torch.Generator().manual_seed(1)
    cases = [_fscore_case(64), _auc_case(32, 32), _random_case(400, 40), _random_case(2000, 100)]
    print(f"float32 data, batch {batch}, forward+backward ms (best of {repeats})")
    head = f"{'case':<20}{'arithmetic':>12}{'f+b ms':>10}{'certified':>11}{'max rel err':>13}"
    print(head)
    print("-" * len(head))
    for case in cases:
        params = tuple(p.float() for p in case.make_params(batch, g))
        A, b, c = (t.double() for t in case.to_dense(*params))
        Ad = A.expand(batch, *A.shape[-2:])
        ref = np.array(
            [
                linprog(c[i], A_ub=Ad[i], b_ub=b[i], bounds=(None, None), method="highs").fun
                for i in range(batch)
            ]
        )
        for dt in (torch.float64, torch.float32):

            def fb(dt=dt, case=case, params=params):
                leaves = [p.clone().requires_grad_(True) for p in params]
                std = case.to_std(*leaves)
                if isinstance(std[0], SparseMatrix):
                    std = (SparseMatrix(std[0].pattern, std[0].values.float()), *std[1:])
                sol = lpdsl.solve(*std, compute_dtype=dt)
                sol.x[..., case.x_slice].sum().backward()
                return sol

            t = best_time(fb, repeats)
            sol = fb()
            ok = (sol.status == 0).reshape(-1).numpy()
            vals = sol.value.detach().double().reshape(-1).numpy()
            err = np.abs(vals - ref) / np.maximum(1.0, np.abs(ref))
            worst = f"{err[ok].max():.1e}" if ok.any() else "—"
            print(
                f"{case.name:<20}{str(dt).split('.')[-1]:>12}{_fmt_ms(t):>10}"
                f"{f'{int(ok.sum())}/{batch}':>11}{worst:>13}",
                flush=True,
            )


def run_netlib() -> None:
    root = "/work/shared/data/netlib"
    files = sorted(glob.glob(f"{root}/*.npz")) + sorted(glob.glob(f"{root}/infeasible/*.npz"))
    print(f"{'problem':<14}{'m x n':>12}{'status':>20}{'iters':>7}{'time s':>9}{'rel err':>10}")
    for f in files:
        A, b, c, obj = netlib_lp(f)
        t0 = time.perf_counter()
        sol = lpdsl.solve(A, b, c)
        t = time.perf_counter() - t0
        infeasible = "infeasible" in f
        err = "—" if infeasible else f"{abs(float(sol.value) - obj) / max(1, abs(obj)):.1e}"
        print(
            f"{os.path.basename(f)[:-4]:<14}{f'{A.shape[0]}x{A.shape[1]}':>12}"
            f"{lpdsl.Status(int(sol.status)).name:>20}{int(sol.iterations):>7}{t:>9.2f}{err:>10}"
        )


if __name__ == "__main__":
    main()
