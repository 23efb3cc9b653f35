"""Pass 4: the Charnes–Cooper transform of a linear-fractional objective.

The ratio metrics of the paper (§2.4, App. A.2: F-score, Jaccard, P@R) maximise
``num(x) / den(x)`` over a polyhedron ``{G x + g <= 0, H x + h == 0}``. Charnes & Cooper (1962)
substitute ``y = t x`` with ``t = 1 / den(x)``; then, for ``den > 0`` on the feasible set,

    min num(x) / den(x)   <=>   min  num(y, t)
                                s.t. G y + g t <= 0,  H y + h t == 0,
                                     den(y, t) == 1,  t >= 0,

where ``f(y, t)`` is the affine ``f`` *homogenised*: its constant term multiplied by ``t``. In
template form homogenising is exact and cheap: the offset node of every row becomes a factor
on the new column ``t``. Bounds are rows by now (pass 3), so they are homogenised too.

Inverse: ``x = y / t``. When the model lets ``den`` reach 0 or the optimum of the ratio is
only approached at infinity, the LP optimum has ``t = 0`` (or the LP is unbounded and the
solver reports it): ``x`` does not exist, and the inverse returns NaN for every variable of
that batch item (``t <= tiny``), so a layer reports the failure instead of a silent value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from lpdsl.compiler import nodes
from lpdsl.compiler.nodes import aux_variable
from lpdsl.compiler.reduction import CanonProblem, Reduction
from lpdsl.compiler.templates import Block, Template, merge
from lpdsl.sparse import Pattern, SparseMatrix, flatten_tail, per_pattern

#: ``t`` counts as zero below ``TINY_FACTOR * eps * max|y|`` (:func:`unscale`), ``eps`` that of the
#: dtype or of float32 if wider (the LP is solved in float64 and only rounded to a half dtype).
TINY_FACTOR = 1e3


def homogenise(tpl: Template, t: Any) -> Template:
    """``tpl`` with its offset moved onto the column ``t`` (``g`` -> ``g t``)."""
    if tpl.offset is None:
        return tpl
    n = tpl.size
    out = np.arange(n, dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    off = tpl.offset
    if off.op == "constant":
        value = np.broadcast_to(np.asarray(off.attrs["value"], np.float64), tpl.shape).reshape(-1)
        keep = value != 0
        block = Block(out[keep], t, zeros[keep], value[keep].copy())
    else:
        block = Block(out, t, zeros, np.ones(n), ((off, out.copy()),))
    return Template(tpl.shape, merge([*tpl.blocks, block]), None)


class CharnesCooper(Reduction):
    """Turns ``min/max num/den`` into an LP in ``(y, t)``; inverse ``x = y / t``."""

    def accepts(self, problem: CanonProblem) -> bool:
        return problem.ratio is not None

    def apply(self, problem: CanonProblem) -> tuple[CanonProblem, Any]:
        num, den = problem.ratio
        t = aux_variable((), "cc_t")
        den_h = homogenise(den, t)
        normalise = Template((), list(den_h.blocks), nodes.constant(-1.0))  # den(y, t) - 1 == 0
        origin = np.zeros(1, np.int64)
        t_nonneg = Template((), [Block(origin, t, origin.copy(), -np.ones(1))])  # -t <= 0
        out = problem.copy(
            objective=homogenise(num, t),
            ratio=None,
            ineqs=[*(homogenise(g, t) for g in problem.ineqs), t_nonneg],
            eqs=[*(homogenise(h, t) for h in problem.eqs), normalise],
            variables=[*problem.variables, t],
        )
        out.notes["ratio"] = (num, den)
        out.notes["cc_t"] = t
        return out, id(t)

    def invert(self, solution: dict[int, torch.Tensor], inverse_data: Any) -> dict[int, Any]:
        t = solution[inverse_data]
        others = {k: v for k, v in solution.items() if k != inverse_data}
        if not others:
            return {}
        batch = t.shape
        flat = torch.cat([flatten_tail(v, len(batch)) for v in others.values()], dim=-1)
        x = unscale(flat, t)
        out, start = {}, 0
        for k, v in others.items():
            n = math.prod(v.shape[len(batch) :])
            out[k] = x[..., start : start + n].reshape(v.shape)
            start += n
        return out


def in_t_unit(
    A: torch.Tensor | SparseMatrix, c: torch.Tensor, unit: torch.Tensor
) -> tuple[torch.Tensor | SparseMatrix, torch.Tensor]:
    """``(A, c)`` of the same LP over ``(y, t / unit)``, ``unit`` ``(*B,)`` (``t`` is the last
    column): the Charnes–Cooper LP with ``t`` measured in another unit (``LPLayer`` re-solves a
    large ``x`` so, docs/compiler.md)."""
    batch = unit.shape  # the solve's (broadcast) batch: A and c may have fewer dimensions
    c = c.expand(*batch, c.shape[-1])
    if isinstance(A, SparseMatrix):
        col = A.pattern.cols == A.pattern.shape[1] - 1
        values = A.values.expand(*batch, A.values.shape[-1])
        A = SparseMatrix(A.pattern, torch.where(col, values * unit.unsqueeze(-1), values))
    else:
        A = A.expand(*batch, *A.shape[-2:])
        A = torch.cat([A[..., :-1], A[..., -1:] * unit[..., None, None]], -1)
    return A, torch.cat([c[..., :-1], c[..., -1:] * unit.unsqueeze(-1)], -1)


def t_times(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``x`` ``(*B, n)`` with its last entry (``t``) multiplied by ``factor`` ``(*B,)``."""
    return torch.cat([x[..., :-1], x[..., -1:] * factor.to(x.dtype).unsqueeze(-1)], -1)


def denominator_lp(
    A: torch.Tensor | SparseMatrix, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``min den(x)`` over the model's feasible set, from its Charnes–Cooper LP ``(A, b)``.

    Setting ``t = 1`` in the homogenised rows (``b_i = 0``) gives the original rows ``A_i x <=
    -A_it``; the pair ``den(y, t) = 1`` (``b_i = +-1``) gives ``den(x) = q.x + q_0`` and is
    dropped (its rows become ``0 <= 1``). Returns ``(A', b', q, q_0)``: ``min q.x s.t. A' x <=
    b'`` has value ``min den - q_0``. Charnes–Cooper needs ``den > 0`` on the feasible set; where
    ``den`` changes sign it optimises over the part with ``den > 0`` only (``min (x + 2) / x``
    over ``-1 <= x <= 1`` gave 3, the infimum being ``-inf``: a helper's probe).
    """
    if isinstance(A, SparseMatrix):
        pat, values = A.pattern, A.values
        m, n = pat.shape
        b = b.expand(*values.shape[:-1], m) if b.dim() < values.dim() else b
        values = values.expand(*b.shape[:-1], values.shape[-1])
        b_k = b.index_select(-1, pat.rows)
        on_t = pat.cols == n - 1
        t_col = values.new_zeros(b.shape).index_add(-1, pat.rows[on_t], values[..., on_t])
        q_row = values.new_zeros((*b.shape[:-1], n))
        q_row = q_row.index_add(-1, pat.cols, torch.where(b_k > 0.0, values, 0.0))
        A_x = SparseMatrix(_without_t(pat), torch.where(b_k == 0.0, values, 0.0)[..., ~on_t])
    else:
        A, b = torch.broadcast_tensors(A, b.unsqueeze(-1))[0], b.expand(A.shape[:-1])
        t_col = A[..., -1]
        q_row = (A * (b > 0.0).to(A.dtype).unsqueeze(-1)).sum(-2)
        A_x = torch.where((b == 0.0).unsqueeze(-1), A[..., :-1], 0.0)
    b_x = torch.where(b == 0.0, -t_col, 1.0)
    return A_x, b_x, q_row[..., :-1], q_row[..., -1]


@per_pattern
def _without_t(pattern: Pattern) -> Pattern:
    """``pattern`` without its last column (the column of ``t``)."""
    keep = pattern.cols < pattern.shape[1] - 1
    return Pattern(pattern.rows[keep], pattern.cols[keep], (pattern.shape[0], pattern.shape[1] - 1))


def unscale(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x = y / t`` for ``y`` ``(*B, k)``, ``t`` ``(*B,)``; NaN rows where ``t <= tiny``.

    Pass ``y``, ``t`` in the dtype the LP was solved in: a ``t`` at 0 comes out at that
    dtype's rounding level. Since ``t / max|y| = 1 / max|x|``, the test caps ``|x|`` at
    ``1 / (TINY_FACTOR * eps)``: 4.5e12 for a float64 solve, 8,389 for a float32 one (a
    float32 result of lpdsl's default float64 solve judged by float32's eps made
    ``max (x / (x + 1))``, ``1 <= x <= 1e4``, NaN; see ``CompiledProblem.recover``).

    ``tiny = TINY_FACTOR * eps * max|y|``: a ``t`` that small against ``y = t x`` means the
    ratio's optimum is at infinity or ``den`` reached 0 (docs/compiler.md), not a finite point
    (a feasible ``(y, t)`` is never all zero: ``den(y, t) = 1``). Relative, not absolute: a
    float32 F-score model over 9,000 samples has ``t = 1/den ~ 1e-4``, below float32's
    absolute ``TINY_FACTOR * eps = 1.2e-4``, at a perfectly finite ``x`` in [0, 1].
    ``eps`` is float32's for half dtypes: their own (bfloat16: 7.8e-3) made every ``t`` of an
    F-score model (1 / the number of positives) count as zero.
    """
    scale = torch.zeros_like(t)
    if y.shape[-1]:
        scale = y.detach().abs().amax(-1)
    eps = torch.finfo(torch.promote_types(t.dtype, torch.float32)).eps
    ok = t > TINY_FACTOR * eps * scale
    safe = torch.where(ok, t, torch.ones_like(t)).unsqueeze(-1)
    return torch.where(ok.unsqueeze(-1), y / safe, torch.full_like(y, float("nan")))
