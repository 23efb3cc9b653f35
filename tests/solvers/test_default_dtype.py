"""Results do not depend on torch's default dtype (``torch.set_default_dtype``).

With the default at float64, float32 arithmetic raised torch's "Expected b and A to have
the same dtype" from a Cholesky solve: two Python numbers in ``torch.where`` had made a
float64 tensor of the ε schedule (a reviewing helper's probe, thirteenth pass). Every path
here is run under both defaults and must give bit-identical results.
"""

from __future__ import annotations

import pytest
import torch
from families import fscore_lp, random_lp, to_sparse

import lpdsl
from lpdsl.metrics import AUCLoss, FBetaLoss, MulticlassAUCLoss, PrecisionAtRecallLoss


def _cases():
    g = torch.Generator().manual_seed(0)
    A, b, c = random_lp(30, 6, (4,), generator=g)
    s = torch.randn(3, 16, generator=g, dtype=torch.float64)
    y = (torch.rand(3, 16, generator=g, dtype=torch.float64) < 0.5).double()
    y[:, 0] = 1.0
    F = fscore_lp(s, y)
    scores = torch.randn(40, generator=g, dtype=torch.float64)
    labels = torch.arange(40) % 2
    multi = torch.randn(30, 3, generator=g, dtype=torch.float64)
    x = lpdsl.Variable(6, name="x", lb=-3, ub=3)
    G, h = lpdsl.Parameter((30, 6), name="G"), lpdsl.Parameter(30, name="h")
    w = lpdsl.Parameter(6, name="w")
    prob = lpdsl.Problem(lpdsl.Minimize(w @ x), [G @ x <= h])
    f32 = {"compute_dtype": torch.float32}
    return {
        "solve f64": lambda: lpdsl.solve(A, b, c).x,
        "solve f32 data": lambda: lpdsl.solve(A.float(), b.float(), c.float()).x,
        "solve f32 arithmetic": lambda: lpdsl.solve(A, b, c, **f32).x,
        "solve sparse f32 arithmetic": lambda: lpdsl.solve(to_sparse(F[0]), *F[1:], **f32).x,
        "LPLayer f32 arithmetic": lambda: lpdsl.LPLayer(prob, **f32)(A, b, c)[0],
        "FBetaLoss f32 arithmetic": lambda: FBetaLoss(**f32)(scores, labels),
        "P@R f32 data": lambda: PrecisionAtRecallLoss(0.5)(scores.float(), labels),
        "AUCLoss f32 arithmetic": lambda: AUCLoss(**f32)(scores, labels),
        "MulticlassAUCLoss f32 data": lambda: MulticlassAUCLoss(3)(multi.float(), labels[:30] % 3),
    }


@pytest.mark.parametrize("name", list(_cases()))
def test_results_do_not_depend_on_the_default_dtype(name):
    want = _cases()[name]()
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = _cases()[name]()
    finally:
        torch.set_default_dtype(old)
    assert got.dtype == want.dtype
    assert torch.equal(got, want)
