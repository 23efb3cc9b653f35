"""A model first used under ``torch.inference_mode()`` (an evaluation loop) still trains.

Compiled models, their index tensors and layers are cached on first use; built in inference
mode they were inference tensors, and the next training step raised "Inference tensors cannot
be saved for backward". Each case: the first call in inference mode, then a training call,
whose value and gradient must equal those of a fresh instance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lpdsl as lp
from lpdsl.metrics import (
    NMF,
    AUCLoss,
    FBetaLoss,
    JaccardLoss,
    MulticlassAUCLoss,
    PrecisionAtRecallLoss,
    RatioMetricLoss,
    RecallAtPrecisionLoss,
)


def _binary(gen):
    s = torch.randn(24, generator=gen, dtype=torch.float64)
    y = (torch.rand(24, generator=gen) < 0.5).double()
    y[:2] = torch.tensor([1.0, 0.0])
    return s, y


def _multiclass(gen):
    s = torch.randn(18, 3, generator=gen, dtype=torch.float64)
    y = torch.arange(18) % 3
    return s, y


def _nmf(gen):
    rng = np.random.default_rng(0)
    W = rng.random((2, 6))
    W /= W.sum(1, keepdims=True)
    F = rng.random((6, 2))
    F /= F.sum(1, keepdims=True)
    F[[1, 4]] = np.eye(2)
    return (torch.tensor(F @ W),)


CASES = {
    "auc": (AUCLoss, _binary),
    "multiclass-auc": (lambda: MulticlassAUCLoss(3), _multiclass),
    "f1": (FBetaLoss, _binary),
    "jaccard": (JaccardLoss, _binary),
    "p@r": (lambda: PrecisionAtRecallLoss(0.6), _binary),
    "r@p": (lambda: RecallAtPrecisionLoss(0.6), _binary),
    "custom-ratio": (lambda: RatioMetricLoss("TN/(TN+FP)"), _binary),
    "nmf": (lambda: NMF(2), _nmf),
}


def _train_step(module, inputs):
    first = inputs[0].clone().requires_grad_()
    out = module(first, *inputs[1:])
    total = sum(o.sum() for o in out) if isinstance(out, tuple) else out
    total.backward()
    return total.detach(), first.grad


@pytest.mark.parametrize("name", list(CASES))
def test_first_call_in_inference_mode_then_training(name):
    make, data = CASES[name]
    inputs = data(torch.Generator().manual_seed(0))
    module = make()
    with torch.inference_mode():
        module(*inputs)
    value, grad = _train_step(module, inputs)
    ref_value, ref_grad = _train_step(make(), inputs)
    assert torch.equal(value, ref_value)
    assert grad is not None and torch.allclose(grad, ref_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ratio", [False, True])
def test_layer_first_called_in_inference_mode_then_training(ratio):
    n = 6
    p = lp.Parameter(n, name="p")
    x = lp.Variable(n, name="x", nonneg=True, ub=1.0)
    objective = (p @ x + 1.0) / (x.sum() + 1.0) if ratio else p @ x
    problem = lp.Problem(lp.Minimize(objective), [x.sum() >= 1.0])
    values = torch.linspace(-1.0, 1.5, n, dtype=torch.float64)

    def step(layer):
        v = values.clone().requires_grad_()
        (sol,) = layer(v)
        (sol * torch.arange(n)).sum().backward()
        return sol.detach(), v.grad

    layer = lp.LPLayer(problem, parameters=[p], variables=[x])
    fresh = lp.LPLayer(problem, parameters=[p], variables=[x])
    with torch.inference_mode():
        layer(values)
    got, ref = step(layer), step(fresh)
    assert torch.allclose(got[0], ref[0], atol=1e-12) and torch.allclose(got[1], ref[1], atol=1e-12)
