"""Batched matrices with one fixed sparsity pattern.

The compiler knows the sparsity pattern of ``A`` once per model (SPEC §2); only the values
change from call to call and from batch item to batch item. :class:`Pattern` holds the
pattern, :class:`SparseMatrix` a batch of value vectors over it. Products are gathers and
``index_add`` over the nonzeros, so their cost is linear in ``nnz`` and they run unchanged
on CPU and CUDA, in any floating dtype, and under autograd.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lpdsl.errors import DSLError
from lpdsl.validation import outside_transforms

#: Compiled patterns at most this dense are handed to the solver (by ``LPLayer``'s "auto"
#: layout and ``check``) as a SparseMatrix; its structured linear algebra then replaces dense
#: n-by-n Hessians (docs/solver.md).
LAYOUT_DENSITY = 0.1


def auto_layout(pattern: Pattern) -> str:
    """The standard-form layout for a compiled ``pattern``: ``"sparse"`` at most
    ``LAYOUT_DENSITY`` dense, else ``"dense"``."""
    return "sparse" if pattern.density() <= LAYOUT_DENSITY else "dense"


def gather_last(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[..., index]`` for a 1-D ``index``: a ``gather`` with an expanded index.

    Equal to advanced indexing (and differentiable the same way) but 3-4x faster on CPU for
    the batched ``(k, m)`` tensors of the solver and the compiler, where it is the most
    frequent operation.
    """
    if x.dim() == 1:
        return x.index_select(0, index)
    return x.gather(-1, index.expand(*x.shape[:-1], index.numel()))


def flatten_tail(x: torch.Tensor, nb: int) -> torch.Tensor:
    """``x`` of shape ``(*lead, *rest)`` as ``(*lead, prod(rest))``, ``lead`` its first ``nb``
    dimensions: ``reshape((*lead, -1))``, which cannot infer ``-1`` for an empty batch."""
    return x.reshape((*x.shape[:nb], math.prod(x.shape[nb:])))


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """``torch.broadcast_shapes`` of tuples of ints, in plain Python: torch's goes through its
    reference implementation (symbolic sizes) and took 10-18 µs a call, on every solve.
    Raises ``RuntimeError`` as torch's does where two sizes differ and neither is 1."""
    out = [1] * max((len(s) for s in shapes), default=0)
    for shape in shapes:
        for i, size in enumerate(shape, len(out) - len(shape)):
            if size != 1:
                if out[i] not in (1, size):
                    raise RuntimeError(f"shapes {shapes} do not broadcast (dimension {i})")
                out[i] = size
    return tuple(out)


def _described(t: object) -> str:
    """``t``'s shape, for a tensor, else its type's name (error messages)."""
    return f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__


@dataclass(frozen=True)
class Pattern:
    """The nonzero positions of an ``(m, n)`` matrix: ``rows[k], cols[k]`` for ``k < nnz``.

    Positions are unique and sorted row-major (row, then column), as the compiler and
    :meth:`SparseMatrix.from_dense` make them; a pattern that is not (or has positions outside
    the shape, or index tensors that are not 1-D int64) raises :class:`~lpdsl.DSLError`.
    """

    rows: torch.Tensor  # (nnz,) int64
    cols: torch.Tensor  # (nnz,) int64
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        # The solver's products rely on this order (a row's nonzeros are contiguous, and a
        # pattern with one nonzero per row lists rows 0..m-1): a pattern out of order gave
        # the matrix with its rows permuted, and a wrong OPTIMAL value.
        shape = tuple(self.shape)
        if len(shape) != 2 or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise DSLError(f"Pattern: shape must be two sizes (m, n) >= 0, got {self.shape!r}")
        for name, t in (("rows", self.rows), ("cols", self.cols)):
            if not isinstance(t, torch.Tensor) or t.dim() != 1 or t.dtype != torch.int64:
                what = (
                    f"{t.dtype} tensor of shape {tuple(t.shape)}"
                    if isinstance(t, torch.Tensor)
                    else type(t).__name__
                )
                raise DSLError(f"Pattern: {name} must be a 1-D int64 tensor (.long()), got {what}")
        if self.rows.numel() != self.cols.numel():
            raise DSLError(
                f"Pattern: rows and cols must have one entry per nonzero, got "
                f"{self.rows.numel()} rows and {self.cols.numel()} cols"
            )
        if not self.rows.numel():
            return
        m, n = shape
        outside = (self.rows < 0) | (self.rows >= m) | (self.cols < 0) | (self.cols >= n)
        if bool(outside.any()):
            k = int(outside.nonzero()[0, 0])
            raise DSLError(
                f"Pattern: nonzero {k} at (row {int(self.rows[k])}, col {int(self.cols[k])}) "
                f"lies outside the shape {shape}"
            )
        key = self.rows * n + self.cols
        out_of_order = key[1:] <= key[:-1]
        if bool(out_of_order.any()):
            k = int(out_of_order.nonzero()[0, 0]) + 1
            raise DSLError(
                f"Pattern: positions must be unique and sorted row-major (by row, then "
                f"column); nonzero {k} at (row {int(self.rows[k])}, col {int(self.cols[k])}) "
                f"does not come after (row {int(self.rows[k - 1])}, col "
                f"{int(self.cols[k - 1])}). Sort them with order = torch.argsort(rows * n + cols) "
                f"and reorder the values the same way (sum the values of repeated positions), "
                f"or build the matrix with SparseMatrix.from_dense"
            )

    @property
    def nnz(self) -> int:
        return int(self.rows.numel())

    def to(self, device: torch.device | str) -> Pattern:
        """The same pattern with its index tensors on ``device``."""
        return Pattern(self.rows.to(device), self.cols.to(device), self.shape)

    def density(self) -> float:
        m, n = self.shape
        return self.nnz / max(1, m * n)


@dataclass(frozen=True)
class SparseMatrix:
    """A batch of ``(m, n)`` matrices sharing :class:`Pattern`: ``values`` is ``(*B, nnz)``."""

    pattern: Pattern
    values: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, Pattern):
            raise DSLError(
                f"SparseMatrix: pattern must be a Pattern, got {type(self.pattern).__name__}; "
                "build one with Pattern(rows, cols, shape) or use SparseMatrix.from_dense(A)"
            )
        v = self.values
        if not isinstance(v, torch.Tensor) or v.dim() < 1 or v.shape[-1] != self.pattern.nnz:
            raise DSLError(
                f"SparseMatrix: values must be a tensor of shape (*B, nnz) with nnz = "
                f"{self.pattern.nnz} (one value per nonzero of the pattern), got {_described(v)}"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.batch_shape, *self.pattern.shape)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape[:-1])

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    @property
    def device(self) -> torch.device:
        return self.values.device

    def _check_operand(self, name: str, t: torch.Tensor, size: int, dim: str) -> None:
        # gathers by index would silently drop extra entries (A 2x2 times a length-3 x)
        if not isinstance(t, torch.Tensor) or t.dim() < 1 or t.shape[-1] != size:
            raise DSLError(
                f"SparseMatrix.{name}: expected a tensor of shape (*B, {size}) ({dim} = {size}) "
                f"for A of shape {self.shape}, got {_described(t)}"
            )

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``x`` of shape ``(*B, n)``; returns ``(*B, m)``."""
        p = self.pattern
        self._check_operand("matvec", x, p.shape[1], "n")
        prod = self.values * gather_last(x, p.cols)
        batch = broadcast_shapes(self.batch_shape, tuple(x.shape[:-1]))
        out = prod.new_zeros((*batch, p.shape[0]))
        return out.index_add(-1, p.rows, prod.expand(*batch, p.nnz))

    def rmatvec(self, r: torch.Tensor) -> torch.Tensor:
        """``A^T @ r`` for ``r`` of shape ``(*B, m)``; returns ``(*B, n)``."""
        p = self.pattern
        self._check_operand("rmatvec", r, p.shape[0], "m")
        prod = self.values * gather_last(r, p.rows)
        batch = broadcast_shapes(self.batch_shape, tuple(r.shape[:-1]))
        out = prod.new_zeros((*batch, p.shape[1]))
        return out.index_add(-1, p.cols, prod.expand(*batch, p.nnz))

    def to_dense(self) -> torch.Tensor:
        """The dense ``(*B, m, n)`` tensor (differentiable in ``values``)."""
        p = self.pattern
        m, n = p.shape
        flat = self.values.new_zeros((*self.batch_shape, m * n))
        flat = flat.index_add(-1, p.rows * n + p.cols, self.values)
        return flat.reshape(*self.batch_shape, m, n)

    def to(self, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        """Cast values (and move the pattern) like ``Tensor.to``."""
        device = self.device if device is None else torch.device(device)
        pattern = self.pattern if self.pattern.rows.device == device else self.pattern.to(device)
        return SparseMatrix(pattern, self.values.to(dtype=dtype, device=device))

    @staticmethod
    def from_dense(A: torch.Tensor, pattern: Pattern | None = None) -> SparseMatrix:
        """Gather ``A`` (``(*B, m, n)``) on ``pattern`` (default: nonzeros of any batch item)."""
        if not isinstance(A, torch.Tensor) or A.dim() < 2:
            raise DSLError(
                f"SparseMatrix.from_dense: A must be a tensor of shape (*B, m, n), got "
                f"{_described(A)}"
                + ("; convert it with torch.as_tensor" if not isinstance(A, torch.Tensor) else "")
            )
        m, n = A.shape[-2:]
        if pattern is not None and (m, n) != tuple(pattern.shape):
            # the gather would read a corner of a larger A as if it were the whole matrix
            raise DSLError(
                f"SparseMatrix.from_dense: A has shape {tuple(A.shape)} but the pattern is "
                f"{tuple(pattern.shape)}"
            )
        if pattern is None:
            nz = (
                (A != 0).reshape(-1, m, n).any(0).nonzero()
                if A.numel()
                else A.new_zeros((0, 2)).long()
            )
            pattern = Pattern(nz[:, 0].contiguous(), nz[:, 1].contiguous(), (m, n))
        return SparseMatrix(pattern, A[..., pattern.rows, pattern.cols])


def per_pattern(build: Callable[[Pattern], Any]) -> Callable[[Pattern], Any]:
    """Cache ``build(pattern)`` by the pattern's identity (the compiler reuses one per model).

    Built outside inference mode (the Newton iterations run in it) and outside ``torch.func``'s
    transforms: the index tensors outlive the solve that first needs them, and a backward or a
    later transform may use them. ``cache_clear()`` empties the cache.
    """
    cache: dict[int, tuple[Pattern, Any]] = {}

    @functools.wraps(build)
    def get(pattern: Pattern) -> Any:
        hit = cache.get(id(pattern))
        if hit is not None and hit[0] is pattern:
            return hit[1]
        with torch.inference_mode(False), outside_transforms():
            info = build(pattern)
        if len(cache) > 16:
            cache.clear()
        cache[id(pattern)] = (pattern, info)
        return info

    get.cache_clear = cache.clear  # type: ignore[attr-defined]
    return get
