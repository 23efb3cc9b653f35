"""Helpers of the solver tests: a scipy HiGHS reference and tolerance checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

NETLIB = Path("/work/shared/data/netlib")


def highs(A: torch.Tensor, b: torch.Tensor, c: torch.Tensor):
    """scipy HiGHS on one LP ``min c.x s.t. A x <= b``, x free: the ``OptimizeResult``."""
    from scipy.optimize import linprog

    return linprog(
        np.asarray(c, dtype=float),
        A_ub=np.asarray(A, dtype=float),
        b_ub=np.asarray(b, dtype=float),
        bounds=(None, None),
        method="highs",
    )


def highs_values(A: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """HiGHS optimal values of a batch (``A`` may be shared ``(m, n)``)."""
    A = A.expand(*b.shape[:-1], *A.shape[-2:]).reshape(-1, *A.shape[-2:]).double()
    b, c = b.reshape(-1, b.shape[-1]).double(), c.reshape(-1, c.shape[-1]).double()
    out = []
    for i in range(b.shape[0]):
        res = highs(A[i], b[i], c[i])
        assert res.status == 0, res.message
        out.append(res.fun)
    return torch.tensor(out, dtype=torch.float64)


def assert_rel_close(value: torch.Tensor, ref: torch.Tensor, rtol: float) -> None:
    value = value.detach().double().reshape(-1)
    err = (value - ref).abs() / ref.abs().clamp_min(1.0)
    assert float(err.max()) <= rtol, f"max relative error {float(err.max()):.3e} > {rtol:g}"
