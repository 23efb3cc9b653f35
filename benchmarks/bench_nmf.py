"""What the NMF LP (paper App. A.3, eq. 17) solves, and how fast (issue 4, item 4).

Two families of exactly separable, rank-2 ``V`` (rows sum to 1):

* ``skewed``: ``tests/metrics/test_nmf.py::separable(s, 32, 2, 0)`` — mixing weights
  ``F = rand^3`` (rows close to an anchor), ``w = 32``;
* ``uniform``: mixing weights ``F = rand`` normalised, ``w = 2 s``.

For each size: the status of ``NMF(2)`` with its default ``max_iter=3000`` (solved, or the
solver's failure), the wall time including the one-off compile, whether the anchors are
recovered and ``max |V - F W|``. One torch thread, float64.

    .venv/bin/python benchmarks/bench_nmf.py                # s = 16 24 32
    .venv/bin/python benchmarks/bench_nmf.py --sizes 16 20   # chosen sizes
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "metrics"))

from test_nmf import separable  # noqa: E402  (the tests' generator, on purpose)

from lpdsl.errors import SolverError  # noqa: E402
from lpdsl.metrics import NMF  # noqa: E402


def uniform(s: int, w: int, r: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """``V = F W`` with uniform mixing weights; the anchors are the first ``r`` rows."""
    rng = np.random.default_rng(seed)
    W = rng.random((r, w))
    W /= W.sum(1, keepdims=True)
    M = rng.random((s - r, r))
    M /= M.sum(1, keepdims=True)
    return torch.tensor(np.vstack([np.eye(r), M]) @ W), np.arange(r)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 24, 32])
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    head = f"{'family':<9}{'s':>4}{'w':>5}{'result':>12}{'time s':>9}{'anchors':>9}"
    print(head + f"{'max|V-FW|':>11}")
    for s in args.sizes:
        for name, (V, anchors) in (
            ("skewed", separable(s, 32, 2, 0)),
            ("uniform", uniform(s, 2 * s, 2, 0)),
        ):
            t0 = time.perf_counter()
            try:
                F, W = NMF(2)(V)
                result = "solved"
            except SolverError as err:  # the status is in the message: "(MAX_ITER: 1)"
                F = W = None
                found = re.search(r"\(([A-Z_]+): \d+", str(err))
                result = found.group(1) if found else "error"
            dt = time.perf_counter() - t0
            if F is None:
                found, err = "—", "—"
            else:
                rows = [int((V - w_row).abs().sum(1).argmin()) for w_row in W]
                found = "yes" if sorted(rows) == sorted(anchors.tolist()) else "no"
                err = f"{float((V - F @ W).abs().max()):.1e}"
            print(f"{name:<9}{s:>4}{V.shape[1]:>5}{result:>12}{dt:>9.1f}{found:>9}{err:>11}")


if __name__ == "__main__":
    main()
