"""Validate and convert parameter values, once, for every consumer.

The compiler (``standard_form``, ``value``), the layer and the CVXPY oracle (``to_cvxpy``,
``check``) all take parameter values the same way, so they share :func:`bind`: the same
inputs are accepted everywhere and rejected with the same messages. Values keep their autograd
history (only dtype and device conversions are applied), so gradients flow back to the
network that produced them.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lpdsl.errors import DSLError
from lpdsl.expressions import Parameter
from lpdsl.validation import all_finite, check_readable, from_array, promoted

__all__ = ["bind", "names", "order", "value_format"]


def names(items: Sequence[Any]) -> str:
    """``s (3,), y (3,)``: how messages list parameters or variables (an expression, which
    has no name, by its text: ``x[0] ()``)."""
    return ", ".join(
        f"{getattr(x, 'name', None) or x} {tuple(getattr(x, 'shape', ()))}" for x in items
    )


def order(parameters: Sequence[Parameter], values: Any) -> list[tuple[Parameter, Any]]:
    """Pair each parameter with its value, from positional values or one dict."""
    if isinstance(values, Mapping):
        mapping: Mapping[Any, Any] | None = values
    elif isinstance(values, (tuple, list)) and len(values) == 1 and isinstance(values[0], Mapping):
        mapping = values[0]
    else:
        mapping = None
    if mapping is not None:
        unknown = [k for k in mapping if not any(k is p for p in parameters)]
        if unknown:
            described = ", ".join(
                f"{k.name} {k.shape}" if isinstance(k, Parameter) else repr(k) for k in unknown
            )
            # a look-alike (same name, another object) read as a contradiction otherwise
            twins = {p.name for p in parameters} & {
                k.name for k in unknown if isinstance(k, Parameter)
            }
            twin = (
                f". {', '.join(sorted(twins))}: another Parameter object with the name of one "
                "of the problem's; values are matched to parameters by identity, not by name "
                "(use the problem's own, e.g. from problem.parameters())"
                if twins
                else ""
            )
            # a name as a key read as a contradiction too ("'q' ... its parameters are: q")
            named = sorted(
                {p.name for p in parameters} & {k for k in unknown if isinstance(k, str)}
            )
            if named:
                twin += (
                    f". The key(s) {', '.join(map(repr, named))} are names: key the dict by the "
                    "Parameter objects themselves ({q: value}, e.g. from problem.parameters())"
                )
            raise DSLError(
                f"values given for {len(unknown)} key(s) that are not parameters of this "
                f"problem: {described}; its parameters are: {names(parameters) or 'none'}{twin}"
            )
        missing = [p for p in parameters if p not in mapping]
        if missing:
            raise DSLError(
                f"no value given for {len(missing)} parameter(s): {names(missing)} "
                f"(expected a value for each of: {names(parameters)})"
            )
        return [(p, mapping[p]) for p in parameters]
    if not isinstance(values, (tuple, list)):
        values = (values,)
    if len(values) != len(parameters):
        if len(values) < len(parameters):
            detail = f"missing values for: {names(parameters[len(values) :])}"
        else:
            detail = f"{len(values) - len(parameters)} value(s) too many"
        raise DSLError(
            f"expected {len(parameters)} parameter value(s), in creation order "
            f"({names(parameters) or 'no parameters'}), but got {len(values)}: {detail}. "
            "Pass them positionally in that order, or as one dict {parameter: value}"
        )
    return list(zip(parameters, values, strict=True))


def _holds_tensor(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_holds_tensor(v) for v in value)
    return isinstance(value, torch.Tensor)


def _first_sparse(value: Any) -> torch.Tensor | None:
    """The first sparse tensor in a (nested) list, or None."""
    if isinstance(value, (list, tuple)):
        return next((t for t in map(_first_sparse, value) if t is not None), None)
    if isinstance(value, torch.Tensor) and value.layout != torch.strided:
        return value
    return None


def _sparse_value(p: Parameter, value: torch.Tensor, where: str = "") -> DSLError:
    return DSLError(
        f"parameter {p.name!r} (shape {p.shape}): the value{where} is a sparse tensor "
        f"(layout {value.layout}, shape {tuple(value.shape)}); parameter values must be "
        "dense tensors: pass value.to_dense() (gradients flow through it)"
    )


def _stack(value: Any) -> torch.Tensor:
    if isinstance(value, (list, tuple)):
        return torch.stack([_stack(v) for v in value])
    return from_array(value) if isinstance(value, np.ndarray) else torch.as_tensor(value)


def _as_tensor(p: Parameter, value: Any) -> torch.Tensor | np.ndarray:
    """A tensor stays a tensor (autograd intact), and a (nested) list of tensors is stacked
    into one (numpy refused tensors that require grad); everything else becomes a numpy
    array."""
    if isinstance(value, (list, tuple)) and _holds_tensor(value):
        sparse = _first_sparse(value)  # torch's stack error did not say what to do
        if sparse is not None:
            raise _sparse_value(p, sparse, " in the list")
        try:
            value = _stack(value)
        except (RuntimeError, TypeError, ValueError) as err:
            raise DSLError(
                f"parameter {p.name!r}: cannot stack the list of tensors into one tensor ({err})"
            ) from None
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:  # sparse COO/CSR/CSC/BSR: no reshape, no view
            raise _sparse_value(p, value)
        if value.is_complex():
            raise DSLError(
                f"parameter {p.name!r}: complex values (dtype {value.dtype}) are not supported"
            )
        return value
    if isinstance(value, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        try:
            arr = np.asarray(value)
        except ValueError as err:
            raise DSLError(
                f"parameter {p.name!r}: cannot turn the value into an array ({err})"
            ) from None
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(
            arr
        ):
            raise DSLError(
                f"parameter {p.name!r}: values must be real numbers, got an array of dtype "
                f"{arr.dtype} (shape {arr.shape})"
            )
        return arr
    raise DSLError(
        f"parameter {p.name!r} (shape {p.shape}): unsupported value type "
        f"{type(value).__module__}.{type(value).__name__}; pass a torch tensor, numpy array, "
        "list or number"
        + (" (a scipy.sparse matrix: its .toarray())" if hasattr(value, "toarray") else "")
    )


def _raw(parameters: Sequence[Parameter], values: Any) -> list[tuple[Parameter, Any]]:
    """Each parameter with its value as a tensor (lists of tensors stacked) or an array."""
    return [(p, _as_tensor(p, v)) for p, v in order(list(parameters), values)]


def _format(raw: list[tuple[Parameter, Any]]) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of :func:`bind`'s tensors: mixed floating dtypes promote as
    torch's own operations do (under autocast a bfloat16 network output meets a float32
    buffer or batch), float64 where no tensor is floating; integers, bools, arrays and
    numbers take that dtype. One device, the CPU where no value is a tensor."""
    floats = [v.dtype for _, v in raw if isinstance(v, torch.Tensor) and v.is_floating_point()]
    devices = {v.device for _, v in raw if isinstance(v, torch.Tensor)}
    if len(devices) > 1:
        listing = ", ".join(f"{p.name}: {v.device}" for p, v in raw if isinstance(v, torch.Tensor))
        raise DSLError(
            f"parameter values are on different devices ({listing}); move them to one device"
        )
    device = next(iter(devices)) if devices else torch.device("cpu")
    return promoted(floats, torch.float64), device


def value_format(parameters: Sequence[Parameter], values: Any) -> tuple[torch.dtype, torch.device]:
    """The dtype and device :func:`bind` gives these values (checking only their count,
    types and devices): a layer builds its LP wider than its values and returns its outputs
    in their dtype."""
    return _format(_raw(parameters, values))


def bind(
    parameters: Sequence[Parameter], values: Any, *, batched: bool = True
) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    """Check parameter values against their declarations and convert them to tensors.

    Args:
        parameters: The problem's parameters, in creation order (``problem.parameters()``).
        values: The values, positionally in that order (a tuple or list), or one dict
            ``{parameter: value}`` (bare, or as the only item of a tuple). Each value is a
            torch tensor, numpy array, (nested) list or number of the parameter's declared
            shape, optionally with leading batch dimensions; a list of tensors is stacked
            (``torch.stack``, autograd intact).
        batched: Whether leading batch dimensions are allowed.

    Returns:
        ``(tensors, batch_shape)``: one tensor per parameter in ``parameters`` order, each of
        shape ``(*b, *declared)`` with its own batch shape ``b`` (not expanded), all with one
        floating dtype (the promotion of the tensor values' floating dtypes, float64 where
        none is floating; numpy arrays, lists and numbers take it, as Python numbers do in
        torch's operations: a float64 array beside a float32 network output keeps float32) and
        one device; ``batch_shape`` is the one ``b`` of the batched values
        (``()`` where none is: SPEC §2, unbatched values broadcast, batched ones agree).

    Raises:
        DSLError: on a wrong count, unknown dict keys, a wrong trailing shape, batched
            values of different batch shapes, NaN/Inf, a negative value of a ``nonneg``
            parameter, values on different devices, a sparse tensor (pass
            ``value.to_dense()``), or (``batched=False``) any leading dimension.
    """
    raw = _raw(parameters, values)
    dtype, device = _format(raw)

    tensors: list[torch.Tensor] = []
    batch_shapes: list[tuple[int, ...]] = []
    for p, v in raw:
        t = (
            v.to(dtype=dtype)
            if isinstance(v, torch.Tensor)
            else from_array(v, np.float64).to(dtype=dtype, device=device)
        )
        got = tuple(t.shape)
        k = len(p.shape)
        if len(got) < k or got[len(got) - k :] != p.shape:
            raise DSLError(
                f"parameter {p.name!r} is declared with shape {p.shape} but got a value of "
                f"shape {got}; the trailing dimensions must equal {p.shape}"
                + (" (leading dimensions, if any, are batch dimensions)" if batched else "")
            )
        batch = got[: len(got) - k]
        if batch and not batched:
            raise DSLError(
                f"parameter {p.name!r} (shape {p.shape}) got a value of shape {got} with "
                f"leading batch dimensions {batch}, but batched values are not accepted here; "
                "pass one instance at a time"
            )
        check_readable(t, f"parameter {p.name!r}")
        if not all_finite(t):
            nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
            where = ""
            if batch:  # which items: a strict=False layer's user masks or drops them
                bad = (~torch.isfinite(t)).reshape(*batch, -1).any(-1).nonzero().tolist()
                shown = ", ".join(str(tuple(i)) if len(i) > 1 else str(i[0]) for i in bad[:5])
                where = f" in batch item(s) {shown}{', ...' if len(bad) > 5 else ''}"
            source = v if isinstance(v, torch.Tensor) else from_array(v, float)
            if all_finite(source):  # the cast to the values' dtype made the Inf, not the user
                # (it read "has 0 NaN and 1 Inf entries" for a numpy 1e5 beside a float16
                # tensor: a verifying helper)
                raise DSLError(
                    f"parameter {p.name!r} (value shape {got}) holds values beyond the range "
                    f"of {dtype} (max {torch.finfo(dtype).max:.5g}), the dtype of the tensor "
                    f"values{where}; pass the tensor values in a wider dtype"
                )
            raise DSLError(
                f"parameter {p.name!r} (value shape {got}) has {nan} NaN and {inf} Inf "
                f"entries{where}; parameter values must be finite"
            )
        if p.attrs.get("nonneg") and t.numel() and bool((t < 0).any()):
            neg = int((t < 0).sum())
            raise DSLError(
                f"parameter {p.name!r} is declared nonneg=True but its value (shape {got}) has "
                f"{neg} negative entr{'y' if neg == 1 else 'ies'} (smallest {float(t.min()):g})"
            )
        tensors.append(t)
        batch_shapes.append(batch)

    # SPEC §2: unbatched values broadcast, batched ones must agree. Broadcasting batch shapes
    # against each other made a (B, 1) value of a scalar parameter (a network head's output)
    # and a (B, n) one of a vector parameter B x B LPs, silently (a reviewing helper's probe)
    batched_shapes = {b for b in batch_shapes if b}
    if len(batched_shapes) > 1:
        listing = ", ".join(f"{p.name}: {b}" for (p, _), b in zip(raw, batch_shapes, strict=True))
        raise DSLError(
            f"the parameters' batch shapes differ ({listing}); batched values must have the "
            "same leading (batch) dimensions, only unbatched ones broadcast. A value of shape "
            "(B, 1) for a parameter of shape () has batch shape (B, 1): squeeze it to (B,); "
            "for every combination of two batches, expand the values to a common batch shape"
        )
    return tensors, batched_shapes.pop() if batched_shapes else ()
