"""Compile and ``standard_form`` timings (issue 2, "Done means").

Prints, for the paper's F-score model (§2.4, App. A.2.1) at n = 256 with a batch of 64
parameter sets, the time of ``standard_form`` (dense and sparse layouts) as a ratio to one
dense batched matmul producing a tensor of the same size as the dense ``A`` (inner dimension
1, i.e. the cheapest matmul that writes that many numbers, and 16), and the compile time of
the F-score and the AUC (32 x 32 pairs, §2.2 eq. 2) models.

Run: ``.venv/bin/python benchmarks/bench_compile.py [--device cuda] [--dtype float64]``
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

import lpdsl as lp


def fscore_problem(n: int) -> lp.Problem:
    """max 2 y·z / (1·z + 1·y) s.t. phi <= z <= 1 + phi, 0 <= z <= 1 (paper §2.4)."""
    phi = lp.Parameter(n, name="phi")
    y = lp.Parameter(n, name="y", nonneg=True)
    z = lp.Variable(n, name="z", lb=0, ub=1)
    return lp.Problem(lp.Maximize((2 * y) @ z / (z.sum() + y.sum())), [z >= phi, z <= 1 + phi])


def auc_problem(n_pos: int, n_neg: int, margin: float = 0.01) -> lp.Problem:
    """min sum z s.t. z >= margin - (f_pos[:, None] - f_neg[None, :]), z >= 0 (eq. 2)."""
    f_pos = lp.Parameter(n_pos, name="f_pos")
    f_neg = lp.Parameter(n_neg, name="f_neg")
    z = lp.Variable((n_pos, n_neg), name="z", nonneg=True)
    gap = f_pos.reshape((n_pos, 1)) - f_neg.reshape((1, n_neg))
    return lp.Problem(lp.Minimize(z.sum()), [z >= margin - gap])


def timeit(fn: Callable[[], object], device: torch.device, repeat: int = 20) -> float:
    """Median wall time of ``fn`` in seconds (synchronising on CUDA)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    n, B = args.n, args.batch

    t0 = time.perf_counter()
    fscore = fscore_problem(n).compile()
    t_compile_f = time.perf_counter() - t0
    t0 = time.perf_counter()
    auc = auc_problem(32, 32).compile()
    t_compile_auc = time.perf_counter() - t0

    gen = torch.Generator().manual_seed(0)
    phi = torch.tanh(torch.randn(B, n, generator=gen)).to(device, dtype)
    y = (torch.rand(B, n, generator=gen) < 0.3).to(device, dtype)
    m, cols = fscore.n_rows, fscore.n_cols
    t_dense = timeit(lambda: fscore.standard_form(phi, y), device)
    t_sparse = timeit(lambda: fscore.standard_form(phi, y, layout="sparse"), device)
    ref = {}
    for k in (1, 16):
        U = torch.randn(B, m, k, generator=gen).to(device, dtype)
        V = torch.randn(B, k, cols, generator=gen).to(device, dtype)
        ref[k] = timeit(lambda U=U, V=V: torch.matmul(U, V), device)

    print(
        f"device {device}, dtype {dtype}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"F-score model n={n}: {fscore!r}")
    print(f"  compile time                      {t_compile_f * 1e3:8.1f} ms   (target < 1000 ms)")
    print(f"AUC model 32x32 pairs: {auc!r}")
    print(f"  compile time                      {t_compile_auc * 1e3:8.1f} ms   (target < 1000 ms)")
    print(f"standard_form, batch {B}, A dense ({B}, {m}, {cols}):")
    print(f"  reference matmul (B,m,1)@(B,1,n)  {ref[1] * 1e3:8.2f} ms")
    print(f"  reference matmul (B,m,16)@(B,16,n){ref[16] * 1e3:8.2f} ms")
    for name, t in (("dense", t_dense), ("sparse", t_sparse)):
        print(
            f"  {name:6s} layout                     {t * 1e3:8.2f} ms   ratio {t / ref[1]:5.2f}x "
            f"(k=1), {t / ref[16]:5.2f}x (k=16)   (target <= 3x)"
        )


if __name__ == "__main__":
    main()
