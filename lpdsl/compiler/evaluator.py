"""A tiny batched torch evaluator for parameter-only subtrees.

The coefficient maps of :mod:`lpdsl.compiler.templates` refer to parameter-only subtrees
(the ``factors`` of a term, the offset of a row). ``standard_form`` evaluates each of them once
per call with one torch operation per node, so the cost is that of evaluating the user's data
expressions, with autograd flowing through every operation (SPEC §2: differentiable in the
data).

Batch convention: every value carries exactly ``nb`` leading batch dimensions (size 1 where a
parameter or constant is unbatched), followed by the node's own shape. Elementwise operands
are aligned by inserting singleton dimensions *after* the batch dimensions, so numpy
broadcasting of the node shapes never mixes with the batch dimensions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from lpdsl.compiler.nodes import allowance, constant_sum, inner_cap, is_constant_sum
from lpdsl.errors import DSLError
from lpdsl.expressions import walk
from lpdsl.sparse import broadcast_shapes, flatten_tail
from lpdsl.validation import outside_transforms, promoted, wide_float


def describe(node: Any) -> str:
    """A short readable name of an expression for error messages."""
    if getattr(node, "name", ""):
        return f"`{node.name}` (shape {tuple(node.shape)})"
    try:
        text = str(node)
    except Exception:  # rendering is best-effort in an error path
        text = node.op
    if len(text) > 120:
        text = text[:117] + "..."
    return f"`{text}` (shape {tuple(node.shape)})"


class Evaluator:
    """Evaluates parameter-only nodes of one compiled model, batched, in torch.

    Args:
        parameters: the model's parameter leaves, in the order values are passed.
    """

    def __init__(self, parameters: Sequence[Any]) -> None:
        self._param_index = {id(p): i for i, p in enumerate(parameters)}
        # keyed by id(array); the array is stored alongside so its id stays unique
        self._index_cache: dict[tuple[int, str], tuple[np.ndarray, torch.Tensor]] = {}
        self._const_cache: dict[tuple[int, torch.dtype, str], tuple[np.ndarray, torch.Tensor]] = {}

    def index(self, arr: np.ndarray, device: torch.device) -> torch.Tensor:
        """``arr`` as an int64 tensor on ``device``, cached (index arrays are fixed)."""
        key = (id(arr), str(device))
        hit = self._index_cache.get(key)
        if hit is None:
            # cached beyond this call, maybe into autograd or a later torch.func call
            with torch.inference_mode(False), outside_transforms():
                t = torch.tensor(arr, dtype=torch.int64, device=device)  # a copy: arr is read-only
            hit = self._index_cache[key] = (arr, t)
        return hit[1]

    def constant(self, arr: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``arr`` as a tensor of ``dtype`` on ``device``, cached."""
        key = (id(arr), dtype, str(device))
        hit = self._const_cache.get(key)
        if hit is None:
            # cached beyond this call, maybe into autograd or a later torch.func call
            with torch.inference_mode(False), outside_transforms():
                t = torch.tensor(np.asarray(arr, dtype=np.float64), dtype=dtype, device=device)
            hit = self._const_cache[key] = (arr, t)
        return hit[1]

    def run(
        self,
        roots: Iterable[Any],
        params: Sequence[torch.Tensor],
        nb: int,
        dtype: torch.dtype,
        device: torch.device,
        data: torch.dtype | None = None,
    ) -> dict[int, torch.Tensor]:
        """Evaluate ``roots``; returns ``{id(node): value}`` for every node visited (and, for
        a ``segment_sum``, ``{("mag", id(node)): its terms' magnitude, ("one", id(node)): its
        one-level magnitude}``, which :func:`inner_magnitude` reads). Not below a sum of
        constants, which is folded once (``nodes.constant_sum``).

        Args:
            roots: parameter-only nodes.
            params: parameter values, each ``(*b, *shape)`` with ``b`` left-padded to ``nb``
                dims (as :meth:`CompiledProblem.standard_form` prepares them).
            nb: number of batch dimensions.
            dtype: dtype of constants.
            device: device of constants and index tensors.
            data: the dtype the parameter values were given in (default ``dtype``), whose
                rounding a ``segment_sum``'s test of sums that cancel allows for.
        """
        memo: dict[int, torch.Tensor] = {}
        for node in walk(roots, prune=is_constant_sum):
            op = node.op
            if op == "parameter":
                out = params[self._param_index[id(node)]]
            elif op == "constant":
                c = self.constant(node.attrs["value"], dtype, device)
                out = c.reshape((1,) * nb + tuple(node.shape))
            elif is_constant_sum(node):  # constants: computed once, in float64
                lead = (1,) * nb + tuple(node.shape)
                value, mag, one = (
                    self.constant(a, dtype, device).reshape(lead) for a in constant_sum(node)
                )
                out = value
                memo[("mag", id(node))], memo[("one", id(node))] = mag, one  # type: ignore[index]
            elif op == "segment_sum":
                given = dtype if data is None else data
                out, mag, one = self._segment_sum(node, memo, nb, device, given)
                memo[("mag", id(node))], memo[("one", id(node))] = mag, one  # type: ignore[index]
            else:
                out = self._apply(node, [memo[id(a)] for a in node.args], nb, device)
            memo[id(node)] = out
        return memo

    def _segment_sum(
        self, node: Any, memo: dict, nb: int, device: torch.device, data: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A coefficient of ``templates.collapse``: each term ``scale * prod_k flat(arg_k)
        [idx_k]`` adds into entry ``seg`` of the result, in float64 (float32 on MPS). A sum
        within its rounding of 0 is 0 in value (its derivative kept), as the standard form's
        sums (``nodes.allowance``: ``A @ (B @ x) - (A @ B) @ x`` left residues of 1e-15 that
        the solver's row scaling made a cut, -15.3 for -20: a verifying helper's probe); the
        terms' magnitudes, summed alongside, are returned for the sums it enters later."""
        out_dtype = promoted([memo[id(a)].dtype for a in node.args], data)
        wide = wide_float(out_dtype, device)
        prods, mags = [], []
        for scale, factors in node.attrs["terms"]:
            pairs = [(node.args[k], idx) for k, idx in factors]
            p, m = self.products(memo, scale, pairs, nb, device, wide, cap=True)
            prods.append(p)
            mags.append(m)
        lead = broadcast_shapes(*(tuple(p.shape[:-1]) for p in prods + mags))
        prod = torch.cat([p.expand(*lead, p.shape[-1]) for p in prods], -1)
        mag = torch.cat([m.expand(*lead, m.shape[-1]) for m in mags], -1)
        seg = self.index(node.attrs["seg"], device)
        total = prod.new_zeros((*lead, *node.shape)).index_add(-1, seg, prod)
        size_ = mag.new_zeros((*lead, *node.shape)).index_add(-1, seg, mag)
        one = mag.new_zeros((*lead, *node.shape)).index_add(-1, seg, prod.detach().abs())
        cache = node.attrs["allow"]
        if data not in cache:  # kept per dtype: the evaluator caches tensors by array identity
            cache[data] = allowance(node.attrs["count"], 1.0, data)
        gone = total.detach().abs() < self.constant(cache[data], wide, device) * size_
        return (total - total.detach() * gone).to(out_dtype), size_, one

    def products(
        self,
        memo: dict,
        scale: np.ndarray,
        factors: Any,
        nb: int,
        device: torch.device,
        wide: torch.dtype,
        cap: bool | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Terms ``scale * prod_k flat(memo[node_k])[..., idx_k]`` in ``wide`` for ``factors``
        ``(node, idx)``, and their magnitudes for a test of sums that cancel
        (:func:`inner_magnitude` with ``cap``; ``None``: not wanted)."""
        p = self.constant(scale, wide, device)
        m = None if cap is None else p.abs()
        for node, idx in factors:
            i = self.index(idx, device)
            v = flatten_tail(memo[id(node)], nb)[..., i].to(wide)
            p = p * v
            if m is not None:
                m = m * inner_magnitude(memo, node, v, i, nb, self, device, cap)
        return p, m

    # -- one op per node ------------------------------------------------------------------

    def _apply(
        self, node: Any, args: list[torch.Tensor], nb: int, device: torch.device
    ) -> torch.Tensor:
        op = node.op
        rank = len(node.shape)
        if op in ("add", "mul", "maximum", "minimum"):
            vals = [_align(a, nb, rank) for a in args]
            out = vals[0]
            fn = {
                "add": torch.add,
                "mul": torch.mul,
                "maximum": torch.maximum,
                "minimum": torch.minimum,
            }[op]
            for v in vals[1:]:
                out = fn(out, v)
            return out
        if op == "neg":
            return -args[0]
        if op == "div":
            return _align(args[0], nb, rank) * _align(_recip(node.args[1], args[1]), nb, rank)
        if op == "recip":
            return _recip(node.args[0], args[0])
        if op == "matmul":
            return _matmul(node, args[0], args[1])
        if op in ("sum", "max", "min"):
            a = args[0]
            axis = node.attrs.get("axis")
            arank = a.ndim - nb
            dims = tuple(range(nb, nb + arank)) if axis is None else (nb + axis,)
            if not dims:
                return a
            if op == "sum":
                return a.sum(dim=dims)
            return a.amax(dim=dims) if op == "max" else a.amin(dim=dims)
        if op == "transpose":
            a = args[0]
            return a.permute(*range(nb), *reversed(range(nb, a.ndim)))
        if op == "reshape":
            a = args[0]
            return a.reshape((*a.shape[:nb], *node.shape))
        if op in ("index", "gather"):
            a = args[0]
            flat = self.index(node.attrs["flat"], device)
            out = flatten_tail(a, nb)[..., flat.reshape(-1)]
            return out.reshape((*a.shape[:nb], *node.shape))
        if op == "concatenate":
            lead = broadcast_shapes(*(tuple(a.shape[:nb]) for a in args))
            axis = nb + node.attrs["axis"]
            return torch.cat([a.expand((*lead, *a.shape[nb:])) for a in args], dim=axis)
        if op == "abs":
            return args[0].abs()
        if op == "pos":
            return torch.relu(args[0])
        if op == "norm1":
            a = args[0]
            return flatten_tail(a.abs(), nb).sum(-1)
        if op == "sum_largest":
            a = args[0]
            flat = flatten_tail(a, nb)
            k = min(int(node.attrs["k"]), flat.shape[-1])
            return flat.topk(k, dim=-1).values.sum(-1)
        raise DSLError(
            f"cannot evaluate the parameter expression {describe(node)}: unknown operation "
            f"{op!r}; the compiler supports the operations of docs/architecture.md"
        )


def _align(t: torch.Tensor, nb: int, rank: int) -> torch.Tensor:
    """Insert singleton dims after the ``nb`` batch dims so ``t`` has ``rank`` data dims."""
    have = t.ndim - nb
    if have >= rank:
        return t
    return t.reshape(*t.shape[:nb], *((1,) * (rank - have)), *t.shape[nb:])


def _recip(den_node: Any, den: torch.Tensor) -> torch.Tensor:
    """``1 / den``; a zero entry is a modelling error named after the divisor expression."""
    zero = den == 0
    if bool(zero.any()):
        count = int(zero.sum())
        raise DSLError(
            f"division by zero: the divisor {describe(den_node)} is zero in {count} "
            f"entr{'y' if count == 1 else 'ies'} of the parameter values given (value shape "
            f"{tuple(den.shape)}); pass data that keep it nonzero"
        )
    return den.reciprocal()


def _matmul(node: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with the 1-D cases of numpy, batch dims broadcast."""
    a1 = len(node.args[0].shape) == 1
    b1 = len(node.args[1].shape) == 1
    if a1:
        a = a.unsqueeze(-2)
    if b1:
        b = b.unsqueeze(-1)
    out = torch.matmul(a, b)
    if b1:
        out = out.squeeze(-1)
    if a1:  # the row dimension added above; it is last once b's column was squeezed
        out = out.squeeze(-1 if b1 else -2)
    return out


def inner_magnitude(
    memo: dict,
    node: Any,
    value: torch.Tensor,
    idx: torch.Tensor,
    nb: int,
    ev: Any,
    device: Any,
    cap: bool = True,
) -> torch.Tensor:
    """The magnitude a factor ``value`` (``node`` gathered at ``idx``) brings to a sum's test
    of sums that cancel: ``|value|``, or for a ``segment_sum`` its terms' magnitude (where it
    enters a further sum, capped as :func:`~lpdsl.compiler.nodes.inner_cap` says). A sum's own
    terms (one level) are not capped: the rounding of float32 data (``C = P @ Q`` beside
    ``P @ (Q @ x)``) is relative to them."""
    inner = memo.get(("mag", id(node)))
    if inner is None:
        return value.detach().abs()
    own = flatten_tail(inner, nb)[..., idx]
    if not cap:
        return own
    count = ev.constant(node.attrs["count"], value.dtype, device)[idx]
    one = flatten_tail(memo[("one", id(node))], nb)[..., idx]
    return inner_cap(own, one, count, value.detach(), torch)
