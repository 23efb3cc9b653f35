"""``compile_problem`` and :class:`CompiledProblem` (SPEC §2, docs/architecture.md).

Compilation runs the pass chain once (all symbolic work, numpy index arithmetic):

1. :class:`~.pwl.EliminatePWL`      piecewise-linear atoms -> epigraph variables + rows
2. :class:`~.lower.BuildTemplates`  trees -> affine templates (coefficient maps)
3. :class:`~.bounds.BoundsToRows`   ``lb <= x <= ub`` -> rows
4. :class:`~.charnes_cooper.CharnesCooper`  ratio objective -> LP in ``(y, t)``
5. :class:`~.equalities.EqualitiesToRows`   ``h == 0`` -> ``h <= 0, -h <= 0``
6. :class:`~.stuffing.CoefficientMap`  one scatter producing ``(A, b, c)``

and ``standard_form`` then evaluates the parameter subtrees and does that one scatter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from lpdsl.compiler.bounds import BoundsToRows
from lpdsl.compiler.charnes_cooper import ESTIMATE_COST_GROWTH, CharnesCooper, unscale
from lpdsl.compiler.equalities import EqualitiesToRows
from lpdsl.compiler.evaluator import Evaluator
from lpdsl.compiler.lower import BuildTemplates
from lpdsl.compiler.nodes import size, sub
from lpdsl.compiler.pwl import EliminatePWL
from lpdsl.compiler.reduction import CanonProblem, Chain
from lpdsl.compiler.stuffing import CoefficientMap, column_layout
from lpdsl.compiler.templates import negate
from lpdsl.errors import DataScaleError, DSLError
from lpdsl.expressions import describe, walk
from lpdsl.sparse import Pattern, SparseMatrix
from lpdsl.validation import (
    all_finite,
    check_readable,
    outside_transforms,
    promoted,
    real_tensor,
    wide_float,
)
from lpdsl.values import bind

_LAYOUTS = ("dense", "sparse")


def compile_problem(problem: Any) -> CompiledProblem:
    """Compile a declared :class:`~lpdsl.problem.Problem` (called by ``Problem.compile()``).

    Outside inference mode even when called in it (a model first used in an evaluation loop)
    and outside ``torch.func``'s transforms (a metric model first used under ``jacrev``): the
    compiled tensors outlive the call, and a later training step saves them for backward.
    """
    with torch.inference_mode(False), outside_transforms():
        return CompiledProblem(problem)


def _canon(problem: Any) -> CanonProblem:
    """The declared problem as ``g <= 0`` / ``h == 0`` rows over its variables."""
    ineqs, eqs = [], []
    for c in problem.constraints:
        if c.sense == "<=":
            ineqs.append(sub(c.lhs, c.rhs))
        elif c.sense == ">=":
            ineqs.append(sub(c.rhs, c.lhs))
        else:
            eqs.append(sub(c.lhs, c.rhs))
    obj = problem.objective
    ratio = None
    if obj.is_ratio:  # (num, den) or, with an estimate, (num, den, estimate): charnes_cooper.py
        ratio = (obj.expr.num, obj.expr.den, *([] if obj.estimate is None else [obj.estimate]))
    variables = list(problem.variables())
    return CanonProblem(
        sense=obj.sense,
        objective=None if ratio else obj.expr,
        ratio=ratio,
        ineqs=ineqs,
        eqs=eqs,
        variables=variables,
        user_variables=list(variables),
    )


#: The dtypes a standard form can be asked for (the float8 types have no ``index_add``).
FLOAT_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


def _narrower(dtype: torch.dtype, than: torch.dtype) -> bool:
    """Whether ``dtype`` holds fewer values than ``than`` (its range or its precision)."""
    a, b = torch.finfo(dtype), torch.finfo(than)
    return a.max < b.max or a.eps > b.eps


def _target_device(device: Any) -> torch.device:
    """``device`` as a :class:`torch.device` for :meth:`CompiledProblem.standard_form`, or a
    :class:`DSLError` that says what is accepted (torch's own read "Expected one of cpu,
    cuda, ..." and a meta device failed later on ``Tensor.item()``)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DSLError(
            f"standard_form: device must be a torch.device or a string such as 'cpu' or "
            f"'cuda:0', got {device!r}"
        ) from None
    if dev.type == "meta":
        raise DSLError(
            "standard_form: device 'meta' holds no values, and the standard form computes "
            "with them; use 'cpu' or an accelerator"
        )
    try:
        torch.empty(0, device=dev)
    except Exception as err:  # "Torch not compiled with CUDA enabled", "No module torch.hpu"
        raise DSLError(
            f"standard_form: device {str(dev)!r} is not available here ({err}); pass "
            "device=None (the parameter values' device, or the CPU)"
        ) from None
    return dev


class CompiledProblem:
    """A problem compiled to *minimise c·x subject to A x <= b* with ``x`` free (SPEC §2).

    Attributes:
        parameters: the problem's parameters, in the order values are passed.
        variables: the user's variables (those :meth:`recover` returns).
        pattern: the fixed sparsity :class:`~lpdsl.sparse.Pattern` of ``A``.
        n_rows, n_cols: ``A`` is ``(n_rows, n_cols)``.
        sense: ``"min"`` or ``"max"`` (the user's); ``c`` is always for minimisation.
        is_ratio: whether Charnes–Cooper was applied.
    """

    def __init__(self, problem: Any) -> None:
        self.problem = problem
        self.parameters = list(problem.parameters())
        canon = _canon(problem)
        self.variables = list(canon.user_variables)
        self.sense = canon.sense
        self.is_ratio = canon.ratio is not None
        self._chain = Chain(
            [EliminatePWL(), BuildTemplates(), BoundsToRows(), CharnesCooper(), EqualitiesToRows()]
        )
        final = self._chain.apply(canon)
        self._columns = list(final.variables)
        self._col_of, n = column_layout(self._columns)
        self._evaluator = ev = Evaluator(self.parameters)
        sign = -1.0 if self.sense == "max" else 1.0
        objective = negate(final.objective) if sign < 0 else final.objective
        rows = [*final.ineqs, objective]
        m = sum(t.size for t in final.ineqs)
        self._map = CoefficientMap(rows, self._columns, ev, m, [-1.0] * len(final.ineqs) + [1.0])
        self.pattern: Pattern = self._map.pattern
        self.n_rows, self.n_cols = m, n
        #: the estimate's node and the sign of the cost, for the shift (_shifted), and the
        #: normalisation row's entries in the sparse layout (fixed, as the pattern is)
        self._kappa, self._sign = final.estimate, sign
        if self._kappa is not None:
            entries = np.flatnonzero(self.pattern.rows.cpu().numpy() == m - 2)
            self._den_entries = (entries, self.pattern.cols.cpu().numpy()[entries])
        if self.is_ratio:
            num, den = final.transformed_ratio
            # t is the last column: the transform appends it (charnes_cooper.py)
            pre = self._columns[:-1]
            self._value_map = CoefficientMap([num, den], pre, ev, 0, [1.0, 1.0])
        else:
            self._value_map = CoefficientMap([final.objective], self._columns, ev, 0, [1.0])
        # value() needs parameter values only when the objective reads one (SPEC §2)
        self._value_reads_params = any(
            node.op == "parameter" for node in walk(self._value_map.roots)
        )

    # ------------------------------------------------------------------ call time

    def _bind(
        self,
        params: tuple[Any, ...],
        dtype: torch.dtype | None,
        device: Any,
        needed: bool = True,
        fallback: torch.dtype | None = None,
    ) -> tuple[list[torch.Tensor], tuple[int, ...], torch.dtype, torch.device]:
        """Validated parameter tensors, left-padded to a common number of batch dims.

        With ``needed=False`` (an objective that reads no parameter) no values may be given.
        ``fallback``: the dtype where no values are read (by default torch's).
        """
        given: Any = params[0] if len(params) == 1 and isinstance(params[0], Mapping) else params
        if dtype is not None and dtype not in FLOAT_DTYPES:
            # an integer dtype truncated 0.5 to 0 (a feasible model came out INFEASIBLE); the
            # float8 types have no index_add (a raw NotImplementedError)
            raise DSLError(
                f"standard_form: dtype must be a floating torch.dtype (torch.float64, float32, "
                f"float16 or bfloat16), got {dtype!r}"
            )
        device = None if device is None else _target_device(device)
        if not self.parameters or not (needed or given):
            if given:
                raise DSLError(
                    f"this problem has no parameters, but {len(given)} value(s) were given"
                )
            dt = dtype or fallback or torch.get_default_dtype()
            return [], (), dt, device or torch.device("cpu")
        tensors, batch = bind(self.parameters, given)
        if device is not None:  # (differentiable; a dtype applies to the output only, below)
            tensors = [t.to(device=device) for t in tensors]
        tensors = list(tensors)
        batch = tuple(batch)
        nb = len(batch)
        padded = []
        for p, t in zip(self.parameters, tensors, strict=True):
            lead = t.dim() - len(p.shape)
            padded.append(t.reshape((*([1] * (nb - lead)), *t.shape)))
        return padded, batch, padded[0].dtype, padded[0].device

    def standard_form(
        self,
        *params: Any,
        layout: str = "dense",
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> tuple[torch.Tensor | SparseMatrix, torch.Tensor, torch.Tensor]:
        """``(A, b, c)`` of *minimise c·x s.t. A x <= b* for the given parameter values.

        Args:
            *params: values in the order of :attr:`parameters` (or one dict
                ``{parameter: value}``), each ``(*B, *shape)`` or unbatched ``shape``
                (broadcast; batched values must share one batch shape ``B``, SPEC §2).
            layout: ``"dense"`` (``A`` a ``(*B, m, n)`` tensor) or ``"sparse"`` (``A`` a
                :class:`~lpdsl.sparse.SparseMatrix` over :attr:`pattern`).
            dtype, device: of ``A``, ``b``, ``c`` (differentiable in the values all the
                same; the values' own rounding still decides which sums cancel to 0). By
                default the values' own (numpy arrays and lists count as float64), or for a
                problem without parameters torch's default dtype on the CPU.

        Returns:
            ``A``, ``b`` ``(*B, m)``, ``c`` ``(*B, n)``; differentiable in every parameter.
        """
        extra = () if self._kappa is None else (self._kappa,)
        flat, values = self._flat(self._map, params, layout, dtype, device, extra=extra)
        head, rest, offsets = self._map.split(flat, layout)
        m = self.n_rows
        A = SparseMatrix(self._pattern_on(flat.device), head) if layout == "sparse" else head
        c = rest[..., 0, :]
        if self._kappa is not None:
            c = self._shifted(c, head, values, layout)
        return A, offsets[..., :m], c

    def _shifted(
        self, c: torch.Tensor, head: torch.Tensor, values: dict, layout: str
    ) -> torch.Tensor:
        """The cost ``num - kappa den`` of an estimate ``kappa`` (Dinkelbach's shift,
        docs/compiler.md) from ``num``'s cost ``c``, per item; ``c`` itself where the shift
        would make the cost more than ``ESTIMATE_COST_GROWTH`` times as large. The
        certificate's tolerances are relative to the cost, and beyond that ``num``'s part
        sinks below them: ``max (2 x0 + x1)/(x0 + 1)`` with ``estimate=1e8`` came out at 1.0
        for 1.44, certified OPTIMAL, when the shift was part of the objective's coefficients
        (a reviewing helper, twentieth pass); computed apart, ``num``'s coefficients stay
        exact where the shift is left out (in float32 they drowned in ``kappa den``'s
        rounding). ``den``'s coefficients are the normalisation row ``den(y, t) <= 1``,
        ``A``'s row ``m - 2`` (charnes_cooper.py, equalities.py). In a half dtype the shift
        is left out: rounded back to it, ``num``'s part of a cost grown even 10x carried
        bfloat16's rounding times 10, and 5 of 64 items came out more than 1 % short of their
        optimum (a verifying helper, 21st pass)."""
        if c.dtype in (torch.float16, torch.bfloat16):
            return c
        if layout == "sparse":
            at, cols = (self._evaluator.index(a, head.device) for a in self._den_entries)
            den = head.new_zeros((*head.shape[:-1], self.n_cols))
            den = den.index_copy(-1, cols, head[..., at])
        else:
            den = head[..., self.n_rows - 2, :]
        node = self._kappa
        # in the evaluation's wide dtype: with float16 values an estimate of 1e5 overflowed
        # the cost to inf and NaN, which solve() refused as a non-finite c (a verifying
        # helper); a shift whose norm is not finite counts as grown, and its kappa is 0 (whose
        # derivative then meets no inf)
        kappa = values[id(node)]
        kappa = kappa.reshape(kappa.shape[: kappa.dim() - len(node.shape)])
        cw, dw = c.to(kappa.dtype), den.to(kappa.dtype)
        with torch.no_grad():
            trial = cw - self._sign * kappa.unsqueeze(-1) * dw
            grown = ~(trial.norm(dim=-1) <= ESTIMATE_COST_GROWTH * cw.norm(dim=-1))
        kappa = torch.where(grown, torch.zeros_like(kappa), kappa)
        return (cw - self._sign * kappa.unsqueeze(-1) * dw).to(c.dtype)

    def objective_offset(self, *params: Any) -> torch.Tensor:
        """The constant ``d`` with LP objective ``c·x + d`` (minimisation sense), ``(*B,)``."""
        flat, _ = self._flat(self._map, params, "sparse", None, None)
        return self._map.split(flat, "sparse")[2][..., -1]

    def _flat(
        self,
        cmap: CoefficientMap,
        params: tuple[Any, ...],
        layout: str,
        dtype: Any,
        device: Any,
        needed: bool = True,
        extra: tuple[Any, ...] = (),
        fallback: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """The flat ``[A | c | offsets]`` of ``cmap`` at these values, and the evaluated
        parameter nodes (``{id(node): value}``), ``extra`` nodes among them (``fallback``: as
        for :meth:`_bind`)."""
        if layout not in _LAYOUTS:
            raise DSLError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
        tensors, batch, data, dev = self._bind(params, dtype, device, needed, fallback)
        dt = dtype or data  # the output's; the values' rounding is judged in their own
        # Coefficients are computed in float64 and rounded once at the end: computed in
        # float32, products of small constants (1e-25 * (1e-25 x)) rounded to 0 on the way
        wide = wide_float(dt, dev)
        values = self._evaluator.run(
            [*cmap.roots, *extra], [t.to(wide) for t in tensors], len(batch), wide, dev, data=data
        )
        flat, lost = cmap.assemble(values, batch, layout, dt, dev, wide, data=data)
        if lost and cmap is self._map:  # rare: whether a row lost all its coefficients
            flat_w, _ = cmap.assemble(values, batch, layout, wide, dev, wide, data=data)
            self._check_underflow(flat_w, flat, layout, data)
        if not all_finite(flat):  # the values are finite (checked in _bind): the model's
            # arithmetic made NaN/Inf (1e200 * 1e200, or a division by a parameter equal to 0)
            too_large = self._too_large_for(dt)
            narrowed = _narrower(dt, data)  # the dtype asked for, not the values, is the limit
            if too_large:  # a bound or constant above the dtype's range became inf
                raise DSLError(
                    f"{'; '.join(too_large)}: beyond {dt}'s range (largest finite "
                    f"{torch.finfo(dt).max:.4g}), so the coefficients hold inf. Make the "
                    "number smaller or "
                    + (
                        "pass a wider dtype or leave dtype out"
                        if narrowed
                        else "pass float64 parameter values"
                    )
                    + " (a bound may also be left out: None, or ±inf entries, mean no bound)"
                )
            if narrowed and all_finite(
                cmap.assemble(values, batch, layout, wide, dev, wide, data=data)[0]
            ):  # ... or the values: float64 values of 1e5 with dtype=float16
                raise DSLError(
                    f"the coefficients computed from the {data} parameter values lie beyond "
                    f"dtype={dt}'s range (largest finite {torch.finfo(dt).max:.4g}); pass a "
                    "wider dtype or leave dtype out"
                )
            source = "parameter values" if self.parameters else "model's constants"
            count = int((~torch.isfinite(flat.detach())).sum())
            # (value()'s map holds the objective alone: split as the standard form's, it
            # raised a raw RuntimeError, a reviewing helper's probe)
            where = self._non_finite_places(flat, layout) if cmap is self._map else "the objective"
            detail = (
                f"{count} NaN/Inf entries although every "
                f"{'value' if self.parameters else 'constant'} is finite ({dt}), in "
                f"{where}: a product overflows or a "
                f"{'parameter' if self.parameters else 'number'} that divides is 0 (rows "
                "count the constraints in the order written, docs/compiler.md)"
            )
            raise DataScaleError(  # a loss words it for its inputs (metrics/_base.py)
                f"the coefficients computed from the {source} hold {detail}; rescale the "
                "data or keep divisors away from 0",
                f"its coefficients hold {detail}",
            )
        return flat, values

    def _non_finite_places(self, flat: torch.Tensor, layout: str) -> str:
        """Where ``flat`` is not finite, for a message: the first rows of ``A`` or entries of
        ``b``, or the objective, with their batch items (one overflowing constraint among
        several was reported only by its count of NaN/Inf entries: a reviewing helper)."""
        m = self.n_rows
        a_rows, c_bad = self._rows(flat, layout, lambda t: ~torch.isfinite(t))
        offsets = ~torch.isfinite(self._map.split(flat, layout)[2])
        bad = torch.cat([a_rows, offsets[..., :m], (c_bad | offsets[..., m])[..., None]], -1)
        return self._places(
            bad,
            lambda k: f"row {k} of A" if k < m else f"b[{k - m}]" if k < 2 * m else "the objective",
        )

    def _check_underflow(
        self, flat_w: torch.Tensor, flat: torch.Tensor, layout: str, data: torch.dtype
    ) -> None:
        """Refuse coefficients whose rounding to ``flat``'s dtype empties a row of ``A`` or the
        cost ``c``: with float32 values ``1e-50 x >= 1e-50`` became ``0 >= 0``, and ``min x``
        answered ``x = 0``. An entry lost beside others of its row, or a lost ``b_i``, moves
        the model by less than the dtype's rounding of that row, and is kept."""
        dt = flat.dtype
        A_w, c_w, A, c = (*self._rows(flat_w, layout), *self._rows(flat, layout))
        lost = torch.cat([(A_w & ~A), (c_w & ~c).unsqueeze(-1)], -1)  # (*B, m + 1)
        if not bool(lost.any()):
            return
        m = self.n_rows
        where = self._places(lost, lambda k: "the objective" if k == m else f"row {k} of A")
        advice = (
            "pass float64 parameter values"
            if self.parameters and not _narrower(dt, data)
            else f"pass dtype=torch.float64{' or leave dtype out' if self.parameters else ''}"
        )
        raise DSLError(
            f"the coefficients of {where} all round to 0 in {dt} (its smallest "
            f"subnormal is {torch.finfo(dt).tiny * torch.finfo(dt).eps:.3g}), which would change "
            f"the model; {advice}, or rescale the constraint"
        )

    @staticmethod
    def _places(hit: torch.Tensor, what: Callable[[int], str]) -> str:
        """The first three places of ``hit`` ``(*B, k)`` as ``what(k)`` with their batch
        items, for a message (``"row 3 of A (batch item (1,)), ..., 2 more"``)."""
        places = hit.nonzero().tolist()
        shown = [
            what(k) + (f" (batch item {tuple(item)})" if item else "") for *item, k in places[:3]
        ]
        return ", ".join(shown + ([f"{len(places) - 3} more"] if len(places) > 3 else []))

    def _rows(
        self,
        flat: torch.Tensor,
        layout: str,
        test: Callable[[torch.Tensor], torch.Tensor] = lambda t: t != 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether ``test`` holds for some entry of each row of ``A`` ``(*B, m)`` and of the
        cost ``c`` ``(*B,)`` (by default: whether it has a nonzero)."""
        head, rest, _ = self._map.split(flat, layout)
        hit = test(head)
        if layout == "sparse":
            rows = self._pattern_on(flat.device).rows
            counts = torch.zeros(
                (*hit.shape[:-1], self.n_rows), dtype=torch.int32, device=hit.device
            )
            a_rows = counts.index_add(-1, rows, hit.int()) > 0
        else:
            a_rows = hit.any(-1)
        return a_rows, test(rest[..., 0, :]).any(-1)

    def _too_large_for(self, dtype: torch.dtype) -> list[str]:
        """The variables' bounds and the model's constants with finite entries beyond
        ``dtype``'s range (``ub=1e39`` with float32 values), each named for a message."""
        big = torch.finfo(dtype).max

        def worst(values: np.ndarray) -> float | None:
            """The largest finite entry beyond ``big`` in magnitude, or None."""
            over = values[np.isfinite(values) & (np.abs(values) > big)]
            return float(over[np.abs(over).argmax()]) if over.size else None

        found = []
        for v in self.variables:
            for which in ("lb", "ub"):
                bound = v.attrs.get(which)
                w = None if bound is None else worst(bound)
                if w is not None:
                    found.append(f"variable {v.name!r} has {which} = {w:g}")
        obj = self.problem.objective.expr
        roots = [obj.num, obj.den] if self.is_ratio else [obj]
        roots += [side for c in self.problem.constraints for side in (c.lhs, c.rhs)]
        for node in walk(roots):
            w = worst(node.attrs["value"]) if node.op == "constant" else None
            if w is not None:
                name = describe(node)
                found.append(f"the constant {name}" + ("" if name == f"{w:g}" else f" holds {w:g}"))
        return list(dict.fromkeys(found))  # equal constants named once

    def _pattern_on(self, device: torch.device) -> Pattern:
        cache = self.__dict__.setdefault("_patterns", {})
        key = str(device)
        if key not in cache:
            with torch.inference_mode(False):  # cached: see compile_problem
                cache[key] = self.pattern if device.type == "cpu" else self.pattern.to(device)
        return cache[key]

    def _check_x(self, x: torch.Tensor, precision: Any = None) -> torch.Tensor:
        """``x`` as a real floating tensor of ``n_cols`` columns, else DSLError; ``precision``
        a floating torch dtype or None. A meta ``x`` gave value() garbage numbers (4.7e27), a
        complex one lost its imaginary part with a warning only (a reviewing helper's probe)."""
        if precision is not None and not (
            isinstance(precision, torch.dtype) and precision.is_floating_point
        ):
            raise DSLError(
                f"precision must be a floating torch dtype (e.g. torch.float64) or None, got "
                f"{precision!r}"
            )
        x = real_tensor(x, "x")
        check_readable(x, "x")
        if not x.is_floating_point():  # e.g. a list of ints: the objective is real-valued
            x = x.to(torch.get_default_dtype())
        if x.dim() == 0 or x.shape[-1] != self.n_cols:
            raise DSLError(
                f"expected a standard-form solution x of shape (*B, {self.n_cols}) (n_cols = "
                f"{self.n_cols}), got shape {tuple(x.shape)}"
            )
        return x

    def recover(
        self, x: torch.Tensor, *, precision: torch.dtype | None = None
    ) -> dict[Any, torch.Tensor]:
        """The user's variables from a standard-form solution ``x`` ``(*B, n)``.

        Charnes–Cooper is undone (``x = y / t``; NaN for batch items with ``t <= tiny``, see
        docs/compiler.md); auxiliary columns are dropped. Returns ``{Variable: (*B, *shape)}``.
        ``precision``: the dtype the LP was solved in, if wider than ``x``'s (``lpdsl.solve``
        solves float32 data in float64, ``Solution.y``'s dtype): it sets ``tiny``.
        Statuses are not looked at: a point of an item that is not OPTIMAL comes back as it
        is (see :meth:`value`).
        """
        x = self._check_x(x, precision)
        out_dtype = x.dtype
        if precision is not None:
            x = x.to(promoted([precision, x.dtype], x.dtype))
        batch = x.shape[:-1]
        solution = {
            id(v): x[..., c0 : c0 + size(v.shape)].reshape((*batch, *v.shape))
            for v, c0 in ((v, self._col_of[id(v)]) for v in self._columns)
        }
        solution = self._chain.invert(solution)
        return {v: solution[id(v)].to(out_dtype) for v in self.variables}

    def value(
        self, x: torch.Tensor, *params: Any, precision: torch.dtype | None = None
    ) -> torch.Tensor:
        """The objective in the user's sense at a standard-form solution ``x`` ``(*B, n)``.

        Sign restored for ``Maximize``; for a ratio, ``num / den`` evaluated at the recovered
        point (NaN where ``t <= tiny``; ``precision`` as in :meth:`recover`). Parameter values
        are needed only when the objective depends on them.

        It evaluates the objective at whatever ``x`` it is given and does not look at solve
        statuses: for an INFEASIBLE, UNBOUNDED or MAX_ITER item of ``lpdsl.solve`` (whose
        ``x`` is e.g. the least-violation point) it returns a finite, plausible-looking number
        that is no optimum (``sol.value`` is ``inf`` there). Mask the result by
        ``sol.status == lp.Status.OPTIMAL``, or use ``LPLayer``, which raises on such items (or
        gives NaN rows with ``strict=False``). :meth:`recover` likewise.
        """
        x = self._check_x(x, precision)
        # x's dtype only for a model without values to read: the values' own otherwise (the
        # result promotes below; in x's, float64 values of 1e5 beside a float16 x overflowed,
        # and 1e-45 beside a float32 x gave 0: a verifying helper)
        flat, _ = self._flat(
            self._value_map,
            params,
            "dense",
            None,
            x.device,
            self._value_reads_params,
            fallback=x.dtype,
        )
        _, M, o = self._value_map.split(flat, "dense")
        if x.dim() > 1 and o.dim() > 1 and x.shape[:-1] != o.shape[:-1]:
            raise DSLError(
                f"value(): x has batch shape {tuple(x.shape[:-1])} but the parameter values "
                f"have batch shape {tuple(o.shape[:-1])}; the two must be equal (pass one x "
                "per batch item of the values), or one of them unbatched"
            )
        dtype = torch.promote_types(flat.dtype, x.dtype)  # e.g. float32 data, float64 x
        x, M, o = x.to(dtype), M.to(dtype), o.to(dtype)
        if self.is_ratio:
            wide = dtype if precision is None else torch.promote_types(precision, dtype)
            pre = unscale(x[..., :-1].to(wide), x[..., -1].to(wide)).to(dtype)
            nd = (M @ pre.unsqueeze(-1)).squeeze(-1) + o
            return nd[..., 0] / nd[..., 1]
        return (M @ x.unsqueeze(-1)).squeeze(-1)[..., 0] + o[..., 0]

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        """Copies and pickles compile the (copied) declared problem anew: the coefficient maps
        are keyed by the identity of the tree's nodes, which a copy does not keep (a deepcopy
        or an unpickled model raised a bare KeyError in ``standard_form``)."""
        return compile_problem, (self.problem,)

    def __repr__(self) -> str:
        kind = "ratio (Charnes–Cooper)" if self.is_ratio else "linear"
        names = ", ".join(v.name for v in self.variables)
        pnames = ", ".join(p.name for p in self.parameters) or "none"
        return (
            f"CompiledProblem({self.sense}imise {kind}; A: {self.n_rows} x {self.n_cols}, "
            f"nnz {self.pattern.nnz} ({100 * self.pattern.density():.2g}% dense); "
            f"variables: {names}; parameters: {pnames})"
        )
