"""A small, clear training loop for comparing metric losses against cross-entropy.

The point is a fair side-by-side comparison, so every loss gets the same network, the same
initial weights (seeded per run), the same minibatches and the same optimiser; only the loss
differs. Every loss, the baseline included, is a module called as ``loss(scores, labels)`` on
raw outputs (logits), the convention of ``lpdsl.metrics`` (SPEC §6).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from lpdsl.data import Dataset, stratified_batches
from lpdsl.errors import DSLError, LPError
from lpdsl.validation import (
    all_finite,
    check_fraction,
    check_positive_float,
    check_positive_int,
)

# --------------------------------------------------------------------------------------------
# Losses


class BCELoss(nn.Module):
    """The cross-entropy baseline with the metric losses' calling convention.

    Binary: ``scores`` ``(n,)`` logits, ``labels`` ``(n,)`` in {0, 1} (binary cross-entropy
    with logits). Multiclass: ``scores`` ``(n, K)``, ``labels`` ``(n,)`` class indices.
    """

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of the batch (a DSLError on an empty one, as the metric
        losses: the mean of nothing was a silent NaN)."""
        if scores.shape[0] == 0:
            raise DSLError("Expected a non-empty batch but got 0 examples")
        if scores.dim() == 1:
            return nn.functional.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype))
        return nn.functional.cross_entropy(scores, labels.long())


@dataclass(frozen=True)
class LossSpec:
    """How to build one named loss (its one-line help lives in ``lpdsl.cli.LOSS_HELP``).

    Attributes:
        metrics_class: Class name in ``lpdsl.metrics``; empty for the built-in baseline.
        multiclass: Whether the loss takes ``(n, K)`` scores (else ``(n,)``); ``None`` for the
            baseline, which takes either.
        build: Makes the module from the class (``None`` for the baseline) and the options.
        min_batch: The smallest batch on which the loss can train (2 for every metric loss:
            a batch of one example has no pair to rank, and a ratio metric of one example is
            degenerate or only pushes that score up); ``lpdsl train`` refuses smaller
            ``--batch-size``.
        needs: Why a smaller batch cannot train the loss, for that message.
    """

    metrics_class: str
    multiclass: bool | None
    build: Callable[[type | None, dict], nn.Module]
    min_batch: int = 1
    needs: str = ""


_PAIR = (
    "every batch would be degenerate and train nothing, as it needs a positive and a negative "
    "example to rank"
)
_BOTH = (
    "a batch of one example is all negative (degenerate) or all positive, where the metric "
    "only pushes that score up; it needs a positive and a negative example"
)
LOSSES: dict[str, LossSpec] = {
    "bce": LossSpec("", None, lambda cls, o: BCELoss()),
    "auc": LossSpec("AUCLoss", False, lambda cls, o: cls(), 2, _PAIR),
    # a batch of one example is all negative (degenerate) or all positive, where the metric
    # only pushes that score up: on digits every ratio loss ended with ROC-AUC 0.37, all
    # predicted positive (a reviewing helper's run, eighteenth pass)
    "fbeta": LossSpec("FBetaLoss", False, lambda cls, o: cls(beta=o["beta"]), 2, _BOTH),
    "jaccard": LossSpec("JaccardLoss", False, lambda cls, o: cls(), 2, _BOTH),
    "p@r": LossSpec("PrecisionAtRecallLoss", False, lambda cls, o: cls(o["alpha"]), 2, _BOTH),
    "r@p": LossSpec("RecallAtPrecisionLoss", False, lambda cls, o: cls(o["alpha"]), 2, _BOTH),
    "multiclass-auc": LossSpec(
        "MulticlassAUCLoss",
        True,
        lambda cls, o: cls(o["n_classes"]),
        2,
        "every batch would be degenerate and train nothing, as it needs examples of two "
        "classes to rank",
    ),
}


def make_loss(name: str, *, n_classes: int = 2, alpha: float = 0.8, beta: float = 1.0) -> nn.Module:
    """Build a loss by its name in :data:`LOSSES`.

    Args:
        name: ``bce``, ``auc``, ``fbeta``, ``jaccard``, ``p@r``, ``r@p`` or
            ``multiclass-auc``.
        n_classes: Classes of the task; 2 means binary (``(n,)`` scores).
        alpha: The recall (``p@r``) or precision (``r@p``) constraint level.
        beta: F-beta's beta.

    Raises:
        DSLError: Unknown name, or a binary loss asked for a multiclass task (or vice versa).
    """
    spec = LOSSES.get(name)
    if spec is None:
        raise DSLError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    multiclass = n_classes > 2
    if spec.multiclass is not None and spec.multiclass != multiclass:
        kind = "multiclass" if multiclass else "binary"
        fits = [n for n, s in LOSSES.items() if s.multiclass in (None, multiclass)]
        other = "multiclass" if spec.multiclass else "binary"
        raise DSLError(
            f"loss {name!r} does not fit a {kind} task ({n_classes} classes); "
            f"losses for it: {', '.join(fits)}; {name!r} needs a {other} task (lpdsl train "
            f"--task {other})"
        )
    options = {"n_classes": n_classes, "alpha": alpha, "beta": beta}
    if not spec.metrics_class:
        return spec.build(None, options)
    metrics = importlib.import_module("lpdsl.metrics")
    return spec.build(getattr(metrics, spec.metrics_class), options)


# --------------------------------------------------------------------------------------------
# Models


class MLP(nn.Sequential):
    """Two hidden ReLU layers: enough for digits and tabular data, quick on a CPU."""

    def __init__(self, in_features: int, n_outputs: int, hidden: int = 64) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_outputs),
        )


class SmallCNN(nn.Sequential):
    """Two conv blocks and a linear head, for ``(1, h, w)`` images such as 28×28."""

    def __init__(self, in_channels: int, n_outputs: int, width: int = 16) -> None:
        super().__init__(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
            nn.Linear(2 * width * 16, 64),
            nn.ReLU(),
            nn.Linear(64, n_outputs),
        )


def make_model(kind: str, feature_shape: Sequence[int], n_classes: int) -> nn.Module:
    """The network: ``"mlp"``, ``"cnn"`` or ``"auto"`` (CNN for images, else MLP).

    Binary tasks get one output (a logit per example), multiclass tasks ``n_classes``.
    """
    n_outputs = 1 if n_classes == 2 else n_classes
    is_image = len(feature_shape) == 3
    if kind == "auto":
        kind = "cnn" if is_image else "mlp"
    if kind == "mlp":
        return MLP(math.prod(feature_shape), n_outputs)
    if kind == "cnn":
        if not is_image:
            raise DSLError(
                f"model 'cnn' needs images of shape (channels, h, w); this data has "
                f"examples of shape {tuple(feature_shape)}: use --model mlp"
            )
        return SmallCNN(feature_shape[0], n_outputs)
    raise DSLError(f"unknown model {kind!r}; choose from auto, mlp, cnn")


# --------------------------------------------------------------------------------------------
# Batches and evaluation


def auc_mu(labels: np.ndarray, scores: np.ndarray) -> float:
    """Kleiman & Page's AUCμ with the default 0/1 cost: the mean over class pairs ``(i, j)``
    of the AUC separating class ``i`` from ``j`` by the score difference ``s_i - s_j``.
    """
    from sklearn.metrics import roc_auc_score

    n_classes = scores.shape[1]
    values = []
    for i in range(n_classes):
        for j in range(i + 1, n_classes):
            mask = (labels == i) | (labels == j)
            if (labels == i).any() and (labels == j).any():
                diff = scores[mask, i] - scores[mask, j]
                values.append(roc_auc_score(labels[mask] == i, diff))
    return float(np.mean(values)) if values else float("nan")


def evaluate(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Test metrics from raw outputs, by scikit-learn.

    Binary (``scores`` ``(n,)``): ROC-AUC, F1 of the predictions ``score > 0`` (probability
    0.5), average precision. Multiclass (``(n, K)``): macro one-vs-rest ROC-AUC, AUCμ, macro F1
    of the argmax and macro average precision.
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    scores, labels = np.asarray(scores), np.asarray(labels)
    k = 2 if scores.ndim == 1 else scores.shape[-1]
    if labels.shape != scores.shape[:1] or not np.isin(labels, np.arange(k)).all():
        raise DSLError(  # a float label was an IndexError from np.eye, inside lpdsl
            f"evaluate: labels must be class indices 0..{k - 1}, one per row of scores "
            f"{scores.shape}; got labels of shape {labels.shape} and dtype {labels.dtype}"
        )
    missing = sorted(set(range(k)) - {int(v) for v in np.unique(labels)})
    if missing:  # ROC-AUC is undefined: NaN (binary) or sklearn's ValueError (multiclass)
        raise DSLError(
            f"evaluate: the test labels have no example of class(es) {missing}, so ROC-AUC is "
            "undefined; give the test split examples of every class"
        )
    labels = labels.astype(np.int64)
    if scores.ndim == 1:
        return {
            "roc_auc": float(roc_auc_score(labels, scores)),
            "f1": float(f1_score(labels, scores > 0, zero_division=0)),
            "average_precision": float(average_precision_score(labels, scores)),
        }
    prob = torch.softmax(torch.as_tensor(scores, dtype=torch.float64), dim=1).numpy()
    onehot = np.eye(scores.shape[1])[labels]
    return {
        "roc_auc": float(roc_auc_score(labels, prob, multi_class="ovr", average="macro")),
        "auc_mu": auc_mu(labels, scores),
        "f1": float(f1_score(labels, scores.argmax(1), average="macro", zero_division=0)),
        "average_precision": float(average_precision_score(onehot, prob, average="macro")),
    }


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, device: torch.device, batch: int = 1024) -> np.ndarray:
    """Raw outputs on ``x``: ``(n,)`` logits for one output, else ``(n, K)``."""
    model.eval()
    dtype = next(model.parameters()).dtype  # numpy's float64 met float32 weights inside torch
    outs = [
        model(torch.as_tensor(x[start : start + batch], device=device, dtype=dtype)).float().cpu()
        for start in range(0, len(x), batch)
    ]
    model.train()
    if not outs:  # torch.cat of nothing raised inside lpdsl
        raise DSLError("predict: x holds no examples")
    out = torch.cat(outs).numpy()
    return out[:, 0] if out.shape[1] == 1 else out


# --------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainConfig:
    """Options of one training run; the defaults are those of ``lpdsl train``.

    Attributes:
        epochs: Passes over the training set.
        batch_size: Minibatch size (the paper uses 64).
        lr: Adam's learning rate.
        seed: Seeds the initial weights and the batch order: two runs with the same seed and
            loss give the same numbers, and every loss starts from the same weights.
        model: ``auto``, ``mlp`` or ``cnn``.
        device: Torch device name.
        alpha: Constraint level of ``p@r`` / ``r@p``.
        beta: F-beta's beta.
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    model: str = "auto"
    device: str = "cpu"
    alpha: float = 0.8
    beta: float = 1.0

    def __post_init__(self) -> None:
        # checked here, before any data is loaded: these used to surface as tracebacks from
        # Adam ("Invalid learning rate") or CUDA's lazy init, or (epochs = 0) as a report of
        # untrained networks
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        if check_positive_float("lr", self.lr) > torch.finfo(torch.float32).max:
            # Adam raised "value cannot be converted to type float without overflow"
            raise DSLError(
                f"Expected argument `lr` to fit the network's float32 weights but got {self.lr}"
            )
        # checked whichever loss runs: results.json records them (alpha=nan was written there)
        check_fraction("alpha", self.alpha)
        check_positive_float("beta", self.beta)
        # numpy's and scikit-learn's generators take seeds in [0, 2**32)
        if check_positive_int("seed", self.seed, minimum=0) >= 2**32:
            raise DSLError(f"Expected argument `seed` to be below 2**32 but got {self.seed}")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise DSLError(f"unknown device {self.device!r}; e.g. cpu, cuda, cuda:1, mps") from err
        usable = device.type != "meta"
        try:  # any backend (xpu, hpu, ...) raises its own error type when it is missing
            torch.empty(0, device=device)
        except Exception:
            usable = False
        if not usable:
            raise DSLError(
                f"device {self.device!r} is not available in this torch build or on this "
                "machine (or holds no data, as 'meta'); use --device cpu"
            )


@dataclass
class RunResult:
    """What one loss achieved.

    Attributes:
        loss: The loss's name.
        metrics: Final test metrics (see :func:`evaluate`).
        history: One dict per epoch: ``epoch``, ``train_loss`` (mean of the loss being
            minimised, so not comparable across losses) and the test metrics.
        seconds: Wall time of the training (evaluation excluded).
        seconds_per_step: ``seconds`` over the number of optimiser steps.
        test_scores: Final raw test outputs, for ROC and PR curves (not saved to JSON).
    """

    loss: str
    metrics: dict[str, float]
    history: list[dict[str, float]]
    seconds: float
    seconds_per_step: float
    test_scores: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        """Everything but the raw test scores."""
        out = asdict(self)
        out.pop("test_scores")
        return out


def check_batch_size(loss_name: str, batch_size: int) -> None:
    """Refuse a batch smaller than ``loss_name``'s ``min_batch``: every batch would be
    degenerate, and an untrained network came back (``lpdsl train`` checks it before loading
    any data, ``train_one`` before training)."""
    spec = LOSSES.get(loss_name)
    if spec is not None and 1 <= batch_size < spec.min_batch:
        raise DSLError(
            f"batch_size {batch_size} is too small for {loss_name}: {spec.needs}; use "
            f"batch_size {spec.min_batch} or more"
        )


def train_one(
    data: Dataset,
    loss_name: str,
    config: TrainConfig,
    *,
    progress: bool = False,
    loss: nn.Module | None = None,
    optimizer: Callable[[nn.Module, nn.Module], torch.optim.Optimizer] | None = None,
) -> RunResult:
    """Train a fresh network on ``data`` with one loss and evaluate it after every epoch.

    Args:
        data: The task.
        loss_name: A name in :data:`LOSSES` (also the label of the result).
        config: Epochs, batch size, learning rate, seed, model, device.
        progress: Show a tqdm bar over the optimiser steps.
        loss: Use this module instead of building ``loss_name`` (e.g. wrapped for DDP).
        optimizer: Builds the optimiser from ``(model, loss)`` instead of Adam at
            ``config.lr`` (e.g. LibAUC's PESG, which also updates the loss's own parameters).

    Raises:
        LPError: A non-finite loss value (the message names the epoch and step).
    """
    device = torch.device(config.device)
    check_batch_size(loss_name, config.batch_size)
    if loss is None:
        loss = make_loss(loss_name, n_classes=data.n_classes, alpha=config.alpha, beta=config.beta)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = make_model(config.model, data.feature_shape, data.n_classes).to(device)
    loss = loss.to(device)
    if optimizer is None:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    else:
        opt = optimizer(model, loss)
    rng = np.random.default_rng(config.seed)
    # in the network's dtype: float64 features met float32 weights inside nn.Linear
    x_train = torch.as_tensor(data.x_train, device=device, dtype=next(model.parameters()).dtype)
    y_train = torch.as_tensor(data.y_train, device=device)

    n_steps = config.epochs * max(1, math.ceil(len(data.y_train) / config.batch_size))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps, desc=f"{loss_name:>14}", unit="step", leave=True)
    history: list[dict[str, float]] = []
    train_seconds = 0.0
    steps = 0
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        total, count = 0.0, 0
        for batch in stratified_batches(data.y_train, config.batch_size, rng):
            idx = torch.as_tensor(batch, device=device)
            scores = model(x_train[idx])
            if scores.shape[1] == 1:
                scores = scores[:, 0]
            if not all_finite(scores):  # the LP losses refuse them
                # with their own words, which named neither the loss, the step nor --lr
                raise LPError(
                    f"loss {loss_name!r}: the network's outputs are NaN/Inf at epoch {epoch}, "
                    f"step {steps + 1} (the previous steps diverged); try a smaller --lr"
                )
            value = loss(scores, y_train[idx])
            if not torch.isfinite(value):
                raise LPError(
                    f"loss {loss_name!r} returned {value.item()} at epoch {epoch}, step "
                    f"{steps + 1}; try a smaller --lr"
                )
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            total += value.item() * len(batch)
            count += len(batch)
            steps += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value.item():.4f}", refresh=False)
        train_seconds += time.perf_counter() - start
        test_scores = predict(model, data.x_test, device)
        if not np.isfinite(test_scores).all():  # the epoch's last step diverged (the loss
            # is checked before each step, so it could not say): sklearn raised on the NaNs
            raise LPError(
                f"loss {loss_name!r}: the network's outputs are NaN/Inf after epoch {epoch} "
                "(its last steps diverged); try a smaller --lr"
            )
        metrics = evaluate(test_scores, data.y_test)
        history.append({"epoch": epoch, "train_loss": total / count, **metrics})
        if bar is not None:
            bar.set_postfix(loss=f"{total / count:.4f}", auc=f"{metrics['roc_auc']:.4f}")
    if bar is not None:
        bar.close()
    test_scores = predict(model, data.x_test, device)
    return RunResult(
        loss=loss_name,
        metrics=evaluate(test_scores, data.y_test),
        history=history,
        seconds=train_seconds,
        seconds_per_step=train_seconds / max(steps, 1),
        test_scores=test_scores,
    )
