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
from lpdsl.sparse import flatten_tail

#: The estimate's shift ``num - kappa den`` is left out per item (``CompiledProblem``) where it
#: makes the cost more than this many times as large as ``num``'s: the certificate's tolerances
#: are relative to the cost, and ``num``'s part of it sinks below them (an estimate of 1e8 for
#: a ratio of 1.4 was certified OPTIMAL at 1.0; the ratio losses' batches, docs/metrics.md).
ESTIMATE_COST_GROWTH = 100.0
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
        num, den, *estimate = problem.ratio
        t = aux_variable((), "cc_t")
        den_h = homogenise(den, t)
        objective = homogenise(num, t)
        # an estimate kappa shifts the cost to num - kappa den (Dinkelbach's shift), which the
        # standard form applies per call (CompiledProblem._shifted): it is left out where it
        # would outgrow num, and computed apart from num's coefficients, it stays exact there
        kappa = estimate[0].offset if estimate else None
        normalise = Template((), list(den_h.blocks), nodes.constant(-1.0))  # den(y, t) - 1 == 0
        origin = np.zeros(1, np.int64)
        t_nonneg = Template((), [Block(origin, t, origin.copy(), -np.ones(1))])  # -t <= 0
        out = problem.copy(
            objective=objective,
            ratio=None,
            ineqs=[*(homogenise(g, t) for g in problem.ineqs), t_nonneg],
            eqs=[*(homogenise(h, t) for h in problem.eqs), normalise],
            variables=[*problem.variables, t],
            transformed_ratio=(num, den),
            estimate=kappa,
        )
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


def recover_cap(dtype: torch.dtype) -> float:
    """The largest ``|x|`` that :func:`unscale` recovers from a solve in ``dtype``:
    ``1 / (TINY_FACTOR * eps)`` (for messages that name it)."""
    return 1 / (TINY_FACTOR * torch.finfo(torch.promote_types(dtype, torch.float32)).eps)


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
