"""Shared pieces of the metric zoo: argument validation, the shape cache, the solve path.

Every loss of :mod:`lpdsl.metrics` declares its LP with the DSL once per *shape* (the batch
size, or the numbers of positives and negatives), compiles it once, and keeps the compiled
layer in a :class:`ShapeCache`. A step whose shape was seen before does no symbolic work: it
binds the parameter values and solves.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

import lpdsl as lp
from lpdsl.errors import DataScaleError, DSLError, SolverError
from lpdsl.layers import (
    LAYER_OPTIONS,
    NAN_ROWS_ADVICE,
    SOLVE_OPTIONS,
    build_dtype,
    check_options,
)
from lpdsl.validation import (
    all_finite,
    check_readable,
    computable,
    detached,
    eager,
    real_tensor,
)
from lpdsl.values import value_format


def as_float_tensor(value: Any, name: str) -> torch.Tensor:
    """``value`` as a real floating tensor: float tensors are kept, numpy arrays and lists
    keep numpy's precision (Python floats are float64: as float32, an NMF input built exactly
    separable in float64 lost its separability and the LP failed), integers and booleans
    become torch's default dtype; complex values are a DSLError (torch would drop the
    imaginary part with only a warning)."""
    value = real_tensor(value, name)
    if not value.is_floating_point():
        value = value.to(torch.get_default_dtype())
    return value


def as_labels(labels: Any, device: torch.device) -> torch.Tensor:
    """``labels`` as a real tensor on ``device`` (booleans as 0/1 integers), else DSLError.

    Detached: labels are data, and a labels tensor that requires grad took part in the ratio
    losses' autograd graph (``labels.grad`` was filled, and torch warned from inside lpdsl
    about converting a tensor that requires grad to a Python float).

    Checked readable before the move: labels on the meta device raised torch's raw
    "Cannot copy out of meta tensor" from ``.to(device)``.
    """
    labels = real_tensor(labels, "labels")
    check_readable(labels, "`labels`")
    return computable(detached(labels).to(device))  # booleans, numpy uint16 labels: 0/1 ints


def as_float_array(name: str, value: Any) -> np.ndarray:
    """An argument such as a cost matrix as a float64 array, else DSLError naming it: a
    complex one is refused (numpy dropped its imaginary part with a warning only), a meta
    tensor too (torch's "Cannot copy out of meta tensor": a reviewing helper's probes)."""
    if isinstance(value, torch.Tensor):
        check_readable(value, f"`{name}`")
        value = value.detach().cpu()
        value = value.double() if not value.is_complex() else value
        value = value.numpy()
    try:
        arr = np.asarray(value)
        if np.iscomplexobj(arr):
            raise DSLError(f"Expected argument `{name}` to be real but got complex values")
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as err:
        if isinstance(err, DSLError):
            raise
        raise DSLError(
            f"Expected argument `{name}` to be an array of numbers but got {value!r}"
        ) from err


def check_finite(scores: torch.Tensor, name: str = "scores") -> None:
    """Raise DSLError if ``scores`` holds NaN or Inf (or is a meta or vmapped tensor)."""
    check_readable(scores, f"`{name}`")
    if not all_finite(scores):
        bad = ~torch.isfinite(scores.detach())
        first = tuple(int(i) for i in bad.nonzero()[0])
        hint = "the data" if name != "scores" else "the network's outputs (a diverged step?)"
        raise DSLError(
            f"Expected `{name}` (shape {tuple(scores.shape)}) to be finite but it holds "
            f"{int(bad.sum())} NaN/Inf entr{'y' if int(bad.sum()) == 1 else 'ies'}, first at "
            f"index {first}; check {hint}"
        )


def _one_score_hint(shape: torch.Size) -> str:
    """How to get one score per sample from a binary head's output of this shape (for
    ``(n, 2)`` ``logits.view(-1)`` gave 2n scores and only moved on to a length mismatch)."""
    if len(shape) == 2 and shape[1] == 2:
        return (
            "for a two-logit binary head pass the log-odds of class 1, "
            "`logits[:, 1] - logits[:, 0]`"
        )
    if len(shape) == 2 and shape[1] > 2:
        # (B, n) may also be B batches of n samples (a reviewing helper), which no loss takes
        return (
            f"a binary loss takes one score per sample; for scores of {shape[1]} classes use "
            "MulticlassAUCLoss; for several batches call the loss once per batch"
        )
    return "give one score per sample, e.g. `logits.view(-1)` for an output of shape (n, 1)"


def binary_inputs(
    scores: Any, labels: Any, name: str = "scores"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a binary batch: ``scores (n,)`` finite floats, ``labels (n,)`` in {0, 1}
    (``name``: what messages call ``scores``, e.g. ``yhat``).

    Returns:
        ``(scores, labels)`` with ``labels`` cast to the dtype and device of ``scores``.

    Raises:
        DSLError: on a shape mismatch, an empty batch, NaN/Inf scores, or labels outside
            {0, 1}.
    """
    scores = as_float_tensor(scores, name)
    labels = as_labels(labels, scores.device)
    if scores.ndim != 1:
        hint = _one_score_hint(scores.shape) if name == "scores" else "one entry per sample"
        raise DSLError(
            f"Expected `{name}` to be a 1-D tensor of shape (n,) but got shape "
            f"{tuple(scores.shape)}; {hint}"
        )
    if labels.shape != scores.shape:
        fix = (
            "; pass `labels.reshape(-1)`"
            if labels.numel() == scores.numel() and labels.ndim > 1
            else "; give one label per score"
        )
        raise DSLError(
            f"Expected `{name}` and `labels` to have the same shape (n,) but got {name} "
            f"{tuple(scores.shape)} and labels {tuple(labels.shape)}{fix}"
        )
    if scores.numel() == 0:
        raise DSLError(f"Expected a non-empty batch but got `{name}` of shape (0,)")
    check_finite(scores, name)
    bad = (labels != 0) & (labels != 1)
    if bool(bad.any()):
        signs = bool(((labels == -1) | (labels == 1)).all())
        fix = (
            "labels in {-1, +1}: pass `(labels + 1) // 2`, or `labels > 0`"
            if signs
            else "pass class indicators (1 for the positive class), e.g. `labels > 0.5`"
        )
        raise DSLError(
            f"Expected `labels` (shape {tuple(labels.shape)}) to hold only 0 and 1 but found "
            f"{sorted({float(v) for v in labels[bad].unique()[:5].tolist()})} at "
            f"{int(bad.sum())} entries; {fix}"
        )
    return scores, labels.to(scores.dtype)


def zero_gradient_constant(scores: torch.Tensor, value: float) -> torch.Tensor:
    """A scalar equal to ``value`` that is connected to ``scores`` with zero gradient.

    Degenerate batches return this, so ``loss.backward()`` still works (and leaves zero
    gradients) instead of raising "does not require grad".
    """
    return (scores * 0.0).sum() + value


# --------------------------------------------------------------------------------------------
# the cache


class CacheInfo(NamedTuple):
    """Counters of a :class:`ShapeCache`, like :func:`functools.lru_cache`'s."""

    hits: int
    misses: int
    maxsize: int
    currsize: int


class ShapeCache:
    """A least-recently-used map from a shape key to a compiled model.

    A miss calls ``build(key)`` (declare + compile: the only symbolic work); a hit returns the
    stored model. ``info()`` counts both, so tests can assert that repeated shapes are not
    recompiled.
    """

    def __init__(self, maxsize: int = 256, owner: str = "", hint: str = "") -> None:
        self.maxsize = maxsize
        self.owner, self.hint = owner, hint  # how the models' solver errors name their owner
        self._store: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, build: Callable[[Hashable], Any]) -> Any:
        """The model for ``key``, built (and counted as a miss) on first use."""
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            return self._store[key]
        self.misses += 1
        model = build(key)
        model.owner, model.hint = self.owner, self.hint
        self._store[key] = model
        if len(self._store) > self.maxsize:
            self._store.popitem(last=False)
        return model

    def info(self) -> CacheInfo:
        """Hits, misses, maximum and current size."""
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self._store))

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles of a loss carry no compiled models (they hold closures and
        immutable expressions, and are rebuilt on first use): ``copy.deepcopy`` of a model
        that owns a used loss (EMA, SWA, checkpoints) works."""
        return ShapeCache(self.maxsize, self.owner, self.hint).__dict__

    def clear(self) -> None:
        """Drop every model and reset the counters."""
        self._store.clear()
        self.hits = 0
        self.misses = 0


# --------------------------------------------------------------------------------------------
# one compiled model


@dataclass
class CompiledModel:
    """A declared LP, its parameters and output variables, and the layer that solves it.

    Attributes:
        problem: The plain :class:`lpdsl.Problem` (printable, sendable to CVXPY).
        parameters: The parameters, in the order ``solve`` takes their values.
        variables: The variables ``solve`` returns, in order.
        solve_options: Keyword options for :class:`lpdsl.LPLayer` (and :func:`lpdsl.solve`).
        layout: The layer's default standard-form layout: ``"sparse"`` for the AUC and NMF
            models (diagonal / very sparse ``A``), ``"auto"`` otherwise; a ``layout`` in
            ``solve_options`` (the user's) wins.
    """

    problem: Any
    parameters: list[Any]
    variables: list[Any]
    solve_options: dict[str, Any] = field(default_factory=dict)
    layout: str = "auto"
    owner: str = ""  # the loss (or NMF) that solves it, for error messages
    hint: str = ""  # what that owner's solver failures usually mean
    _layer: Any = None

    def layer(self) -> Any:
        """The :class:`lpdsl.LPLayer` solving the problem (compiled on first use)."""
        if self._layer is None:
            # Consecutive minibatches are unrelated data: a warm start from the previous
            # batch's solution does not pay (multiclass AUC experiment: 44 ms/step warm vs
            # 31 ms/step cold, docs/results.md §2), so it is off unless asked for.
            # ... and the ratio losses prove den > 0 per batch themselves (ratio.py's polygon)
            # and fix the scale of x (yhat in [0, 1]: no other unit of t helps); the user's
            # layout= (a layer option the loss accepts) overrides the model's
            options = {
                "warm_start": False,
                "check_denominator": False,
                "rescale_t": False,
                "layout": self.layout,
                **self.solve_options,
            }
            self._layer = lp.LPLayer(
                self.problem, parameters=self.parameters, variables=self.variables, **options
            )
        return self._layer

    def solve(self, *values: torch.Tensor) -> list[torch.Tensor]:
        """Solve for the given parameter values (optional leading batch dims); differentiable.

        Raises:
            SolverError: if some batch item is not solved to optimality (named after the
                owner: the user called a loss, not an LPLayer).
        """
        # in the dtype the layer builds the LP in (float64 by default), and the outputs
        # rounded to the values' without the layer's range check: they are the loss's own
        # variables, and one beyond the scores' dtype is no error (AUCLoss's z of a pair
        # mis-ranked by 6e38 in float32 scores, which counts 0 either way, was refused: a
        # verifying helper, 26th pass)
        data, device = value_format(self.parameters, values)
        wide = build_dtype(data, device, self.solve_options.get("compute_dtype"))
        values = tuple(v.to(wide) if isinstance(v, torch.Tensor) else v for v in values)
        try:
            return [out.to(data) for out in self.layer()(*values)]
        except SolverError as err:
            if not self.owner:
                raise
            detail = str(err).removeprefix("LPLayer: ").removesuffix(NAN_ROWS_ADVICE)
            message = f"{self.owner}: the LP of this batch failed: {detail}{self.hint}"
            raise SolverError(message) from None
        except DataScaleError as err:
            # the layer's words speak of parameter values, which the loss's user never gave:
            # AUCLoss on scores ~1e200 said "divide a row of A and its b" until this
            if not self.owner:
                raise
            raise err.reworded(
                f"{self.owner}: the LP made from this batch's inputs was refused",
                "Rescale the inputs (e.g. the scores)",
            ) from None


class CachedModels(torch.nn.Module):
    """A module that solves DSL models compiled once per input shape (losses and NMF).

    Args:
        solve_options: options of :func:`lpdsl.solve` and :class:`lpdsl.LPLayer`, checked
            here so that a misspelt one fails at construction, not at the first step.
    """

    #: Appended to the message of a solver failure (what it usually means for this model).
    failure_hint: ClassVar[str] = ""

    def __init__(self, solve_options: dict[str, Any] | None = None) -> None:
        super().__init__()
        if solve_options is not None and not isinstance(solve_options, Mapping):
            raise DSLError(
                f"{type(self).__name__}: Expected `solve_options` to be a dict of options of "
                f"lpdsl.solve and LPLayer (e.g. {{'max_iter': 1000}}) but got "
                f"{type(solve_options).__name__} {solve_options!r}"
            )
        self.solve_options: dict[str, Any] = dict(solve_options or {})
        own = tuple(
            name
            for name, p in inspect.signature(type(self)).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "solve_options"
        )
        check_options(self.solve_options, SOLVE_OPTIONS | LAYER_OPTIONS, type(self).__name__, own)
        self._cache = ShapeCache(owner=type(self).__name__, hint=self.failure_hint)

    def cache_info(self) -> CacheInfo:
        """How many steps reused a compiled model (hits) and how many compiled one (misses)."""
        return self._cache.info()

    def cache_clear(self) -> None:
        """Forget every compiled model."""
        self._cache.clear()


class MetricLoss(CachedModels):
    """Base of the losses: ``forward(scores, labels) = 1 - estimate(scores, labels)``.

    Subclasses implement :meth:`estimate`, :meth:`problem_for` and
    :meth:`parameter_values`; they keep their compiled models in ``self._cache``.
    """

    higher_is_better: ClassVar[bool] = False
    is_differentiable: ClassVar[bool] = True
    #: The estimate of a batch on which the metric is undefined (see docs/metrics.md).
    degenerate_value: ClassVar[float] = 0.0

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def forward(self, scores: Any, labels: Any) -> torch.Tensor:
        """The loss ``1 - estimate(scores, labels)``: 0 for a perfect model."""
        return 1.0 - self.estimate(scores, labels)

    def estimate(self, scores: Any, labels: Any) -> torch.Tensor:  # pragma: no cover
        """The LP estimate of the metric (differentiable in ``scores``)."""
        raise NotImplementedError


def require_lp(why: str) -> None:
    """Raise for a degenerate batch (``why`` non-empty): no LP is solved, so there is no
    problem, parameter values or solution to hand out."""
    if why:
        raise DSLError(f"no LP is solved for this batch: {why}")
