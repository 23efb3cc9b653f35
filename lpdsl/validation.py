"""Input checks shared by every entry point: scalar arguments, and a cheap finiteness test.

Scalar arguments (a margin, a rank, ``eps``, ``--epochs``) are checked with one message form,
torchmetrics' ``Expected argument `x` to be ... but got ...``, naming where the argument went
when that is not obvious (``of solve()``).

The finiteness test runs on every call.
Every entry point rejects NaN and Inf with a message naming the offending object (values of
parameters, scores, ``A``, ``b``, ``c``), so the test runs several times per solve of a metric
loss. ``torch.isfinite(t).all()`` is five elementwise kernels plus a reduction; one sum is
finite exactly when every entry is, unless it overflows, which the exact test then settles
(measured on float64: 1.9 vs 5.5 µs at 64 entries, 7.9 vs 135 µs at 65,536).
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from lpdsl.errors import DSLError


def _is_bool(value: Any) -> bool:
    # numpy scalars are numbers.Real / numbers.Integral (np.float32(0.1) was refused), but a
    # bool is an int to Python and must not pass as a count or a margin
    return isinstance(value, (bool, np.bool_))


def _argument(name: str, of: str | None) -> str:
    return f"`{name}`" + (f" of {of}" if of else "")


def check_positive_float(name: str, value: Any, *, of: str | None = None) -> float:
    """``value`` as a float if it is a finite number ``> 0`` (not a bool), else DSLError."""
    if (
        _is_bool(value)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise DSLError(
            f"Expected argument {_argument(name, of)} to be a finite positive float but got "
            f"{value!r}"
        )
    return as_written(value)


def check_positive_int(name: str, value: Any, minimum: int = 1, *, of: str | None = None) -> int:
    """``value`` if it is an int ``>= minimum`` (not a bool), else DSLError."""
    if _is_bool(value) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DSLError(
            f"Expected argument {_argument(name, of)} to be an integer >= {minimum} but got "
            f"{value!r}"
        )
    return int(value)


def check_bool(name: str, value: Any, *, of: str | None = None) -> bool:
    """``value`` if it is a bool, else DSLError: ``strict="no"`` was truthy, so strict."""
    if not _is_bool(value):
        raise DSLError(f"Expected argument {_argument(name, of)} to be a bool but got {value!r}")
    return bool(value)


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float if it lies in the open interval (0, 1), else DSLError."""
    if _is_bool(value) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise DSLError(f"Expected argument `{name}` to be a float in (0, 1) but got {value!r}")
    return as_written(value)


def as_written(value: Any) -> float:
    """A real number as a Python float, a narrow numpy float (float32, float16) by its
    shortest decimal form: ``np.float32(0.8)`` is 0.8, as written, not 0.800000011920929, which
    made a batch whose recall is exactly 0.8 infeasible for ``PrecisionAtRecallLoss`` (a
    reviewing helper's probe)."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        return float(str(value))
    return float(value)


def check_one_of(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``, else DSLError."""
    if value not in allowed:
        raise DSLError(f"Expected argument `{name}` to be one of {list(allowed)} but got {value!r}")
    return value


def may_track(t: torch.Tensor) -> bool:
    """Whether ``t`` may carry autograd history: it requires grad, or a ``torch.func``
    transform is active (its wrappers track gradients level by level; also where torch does
    not say)."""
    if t.requires_grad:
        return True
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return active is None or active()


def detached(t: torch.Tensor) -> torch.Tensor:
    """``t.detach()``, or ``t`` itself where it carries no autograd history (:func:`may_track`):
    a detach is one more dispatched operation, and a small solve is per-operation overhead."""
    return t.detach() if may_track(t) else t


def vmapped(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.vmap`` batched tensor, or wraps one (``vmap(grad(f))``), or
    a batched tensor of autograd's own vmap (``is_grads_batched``, ``jacobian(vectorize=True)``:
    "Batching rule not implemented for aten::is_nonzero" from a settling test before)."""
    functorch = getattr(torch._C, "_functorch", None)
    legacy = getattr(functorch, "is_legacy_batchedtensor", None)
    if legacy is not None and legacy(t):
        return True
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    batched = getattr(functorch, "is_batchedtensor", None)
    unwrap = getattr(functorch, "get_unwrapped", None)
    if wrapped is None or batched is None or unwrap is None:
        return False
    while not batched(t):  # a batched tensor itself (autograd's is_grads_batched), or wrapped
        if not wrapped(t):
            return False
        t = unwrap(t)
    return True


def computable(t: torch.Tensor) -> torch.Tensor:
    """``t`` with booleans and the unsigned integers torch has no arithmetic or comparisons
    for (uint16/32/64: "abs_cpu" / "lt_cpu" not implemented) as int64, float64 where a
    uint64 exceeds int64; other dtypes as they are (a boolean A, numpy uint16 labels: raw
    torch errors, reviewing helpers' probes)."""
    if t.dtype == torch.uint64 and bool((t.view(torch.int64) < 0).any()):
        return t.double()  # beyond int64 (torch has no max of a uint64 tensor)
    if t.dtype in (torch.bool, torch.uint16, torch.uint32, torch.uint64):
        return t.long()
    return t


def outside_transforms() -> contextlib.AbstractContextManager:
    """A context in which new tensors are plain ones, not ``torch.func``'s wrappers, for
    tensors cached beyond the call (index arrays, constants, a pattern's index data): made
    while ``jacrev(jacrev(...))`` ran they were its wrappers, and every later ``torch.func``
    call through the same model failed with a functorch internal assert (a reviewing
    helper's probe, eighteenth pass)."""
    disable = getattr(torch._C, "_DisableFuncTorch", None)
    return disable() if disable is not None else contextlib.nullcontext()


def promoted(dtypes: Sequence[torch.dtype], default: torch.dtype) -> torch.dtype:
    """The dtype torch's operations give ``dtypes`` together (``default`` where there is
    none): one rule for the values of a layer, a solve's data and a coefficient's factors.
    (Equal dtypes are their own promotion: torch.promote_types is a dispatched operation.)"""
    if not dtypes:
        return default
    if all(d == dtypes[0] for d in dtypes):
        return dtypes[0]
    return functools.reduce(torch.promote_types, dtypes)


#: What dynamo says where ``fullgraph=True`` meets an lpdsl entry point (its own hint,
#: "remove the torch.compiler.disable call", names a call inside lpdsl).
COMPILE_REASON = (
    "lpdsl solves its LPs eagerly (the iterations depend on the data): compile without "
    "fullgraph=True, and the loss or layer runs eagerly inside the compiled function"
)
CAPTURE_ADVICE = (
    "Use torch.compile (lpdsl runs eagerly inside it), or keep the loss or layer outside "
    "the captured module and call it on the captured module's outputs"
)


F = TypeVar("F", bound=Callable[..., Any])


def eager(fn: F) -> F:
    """``fn`` run eagerly inside a ``torch.compile`` region, as ``torch.compiler.disable``
    does (the solver's control flow depends on the data: traced, it failed in dynamo), without
    importing ``torch._dynamo`` when lpdsl is imported: that import took ~1 s, as long as
    torch's own, in every program, compiled or not. Dynamo does not inline a function marked
    ``_torchdynamo_disable``; the real ``torch.compiler.disable(fn)``, made on the first call
    once dynamo is loaded (a program that never compiles never loads it), then runs ``fn``
    with dynamo's frame hook off. ``torch.jit.trace`` and ``torch.export`` are refused by name:
    they would record one batch's iterations, and failed with raw or false errors (a "batch
    shapes differ" between equal shapes, ``unordered_map::at``, a data-dependent guard).
    ``torch.autocast`` is off inside: it ran a float32 solve's products in bfloat16, and the
    Newton step's Cholesky factorisation failed with torch's raw LinAlgError (a verifying
    helper, 26th pass); the dtypes are the inputs' and ``compute_dtype``'s."""
    disabled: Callable[..., Any] | None = None

    @functools.wraps(fn)
    def entry(*args: Any, **kwargs: Any) -> Any:
        nonlocal disabled
        if torch.jit.is_tracing():
            raise _capture_error("torch.jit.trace", fn, args)
        run = fn
        if "torch._dynamo" in sys.modules:
            if torch.compiler.is_exporting():
                raise _capture_error("torch.export", fn, args)
            if disabled is None:
                disabled = torch.compiler.disable(fn, reason=COMPILE_REASON)
            run = disabled
        on = _autocasting()
        if not on:
            return run(*args, **kwargs)
        with contextlib.ExitStack() as stack:
            for device in on:
                stack.enter_context(torch.autocast(device, enabled=False))
            return run(*args, **kwargs)

    entry._torchdynamo_disable = True  # type: ignore[attr-defined]
    entry._torchdynamo_disable_msg = COMPILE_REASON  # type: ignore[attr-defined]
    return entry  # type: ignore[return-value]


def _autocasting() -> list[str]:
    """The device types on which ``torch.autocast`` is on."""
    try:
        return [d for d in ("cpu", "cuda", "mps", "xpu") if torch.is_autocast_enabled(d)]
    except (TypeError, RuntimeError):  # torch < 2.4: no device argument
        on = ["cpu"] if torch.is_autocast_cpu_enabled() else []
        return on + (["cuda"] if torch.is_autocast_enabled() else [])


def _capture_error(how: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> DSLError:
    """The refusal of ``how`` (a tracer or exporter), naming the loss's or layer's class (a
    method's ``self``) or ``lpdsl.solve``."""
    name = type(args[0]).__name__ if args and isinstance(args[0], torch.nn.Module) else None
    return DSLError(
        f"{name or 'lpdsl.' + fn.__name__} cannot be captured by {how}: the solver's "
        f"iterations depend on the data, so a capture would record one batch's. {CAPTURE_ADVICE}"
    )


def unwrapped(t: torch.Tensor) -> torch.Tensor:
    """``t`` without ``torch.func``'s wrappers (``grad``'s GradTrackingTensor): its value, for
    a copy kept beyond the call. A wrapper outlives its transform, and a layer holding one
    could not be deep-copied or saved afterwards ("Cannot access storage of TensorWrapper": a
    reviewing helper's probe)."""
    functorch = getattr(torch._C, "_functorch", None)
    wrapped = getattr(functorch, "is_functorch_wrapped_tensor", None)
    unwrap = getattr(functorch, "get_unwrapped", None)
    while wrapped is not None and unwrap is not None and wrapped(t):
        t = unwrap(t)
    return t


def check_readable(t: torch.Tensor, name: str) -> None:
    """Refuse tensors whose entries cannot be read: the finiteness test and the solver's
    data-dependent iterations read them, and torch's own error came from inside lpdsl."""
    if t.is_meta:
        raise DSLError(
            f"{name} is a meta tensor (shape {tuple(t.shape)}); meta tensors hold no data, so "
            "there is no LP to solve: pass a tensor on a real device (cpu, cuda)"
        )
    if vmapped(t):
        raise DSLError(
            f"{name} is batched by torch.vmap, which is not supported (the solver's iterations "
            "depend on the data); lp.solve and LPLayer are batched already: stack the inputs "
            "on a leading dimension instead, and call a loss once per batch"
        )


def check_strided(t: torch.Tensor, name: str) -> None:
    """Refuse a sparse-layout tensor (COO, CSR, ...): lpdsl reads dense data, and torch's own
    error (an aten operator without a sparse kernel) came from inside lpdsl."""
    if t.layout != torch.strided:
        raise DSLError(
            f"{name} is a sparse tensor (layout {t.layout}, shape {tuple(t.shape)}); pass a "
            "dense tensor, .to_dense() (gradients flow through it)"
        )


def wide_float(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """float64 for intermediate results where ``device`` has it, else ``dtype`` (MPS has no
    float64): the compiler's coefficients and the arrow solver's factors are computed so and
    rounded once to ``dtype``."""
    return dtype if device.type == "mps" else torch.float64


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite (integer and boolean tensors always are)."""
    if not (t.is_floating_point() or t.is_complex()):
        return True
    with torch.no_grad():  # (a detach would be one more dispatched operation)
        total = t.sum()
    if math.isfinite(abs(complex(total)) if t.is_complex() else float(total)):
        return True
    return bool(torch.isfinite(t).all())  # a NaN/Inf entry, or only an overflowing sum


def from_array(value: Any, dtype: Any = None) -> torch.Tensor:
    """``torch.as_tensor(np.asarray(value, dtype))``, with a view of negative strides copied
    first: torch refuses those (``s[::-1]``, ``np.flip``), and a reversed score array was
    reported as "not an array of numbers" (a probing helper, 25th pass)."""
    arr = np.asarray(value, dtype=dtype)
    if any(step < 0 for step in arr.strides):
        arr = arr.copy()
    return torch.as_tensor(arr)


def real_tensor(value: Any, name: str) -> torch.Tensor:
    """A tensor as given, anything else through numpy (keeping its precision); None, strings
    and complex values are a DSLError naming ``name``."""
    if not isinstance(value, torch.Tensor):
        try:
            value = from_array(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise DSLError(
                f"Expected `{name}` to be a tensor or array of numbers but got "
                f"{type(value).__name__}"
            ) from err
    check_strided(value, f"`{name}`")
    if value.is_complex():
        raise DSLError(f"Expected `{name}` to be real but got dtype {value.dtype}")
    return value
