"""``LPLayer``: a declared problem as a ``torch.nn.Module`` (SPEC §4).

The layer compiles once in ``__init__``; every call binds the parameter values, emits the
standard form (no symbolic work), solves it with :func:`lpdsl.solve` and returns the user's
variables. It follows CvxpyLayer's calling convention: inputs in the order of
``parameters``, outputs in the order of ``variables``, optional leading batch dimensions.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from lpdsl.compiler.charnes_cooper import recover_cap
from lpdsl.errors import DataScaleError, DSLError, SolverError
from lpdsl.expressions import Expression
from lpdsl.problem import Problem
from lpdsl.solvers import Solution, Status, solve
from lpdsl.solvers.newton import (
    DEFAULT_MAX_ITER,
    check_solve_options,
    default_tol,
)
from lpdsl.solvers.ratio import denominator_lp, solve_ratio_lp
from lpdsl.sparse import auto_layout, flatten_tail
from lpdsl.validation import all_finite, check_bool, eager, unwrapped, wide_float
from lpdsl.values import names, order, value_format

#: The keyword options of :func:`lpdsl.solve` (a layer's ``**solve_options``), and the options
#: of :class:`LPLayer` that a metric loss's options may hold too (not ``check_denominator`` and
#: ``rescale_t``: a loss sets those itself, ``CompiledModel.layer``).
SOLVE_OPTIONS = frozenset(
    name for name, p in inspect.signature(solve).parameters.items() if p.kind is p.KEYWORD_ONLY
)
LAYER_OPTIONS = frozenset({"strict", "layout", "warm_start"})
#: How a failure message names an OPTIMAL item of a ratio model that still failed.
DEN_NEGATIVE = "OPTIMAL over den > 0 only: the denominator is negative elsewhere"
DEN_UNVERIFIED = "OPTIMAL, but min den over the feasible set was not solved"
NOT_FINITE = "OPTIMAL but the ratio's x = y / t is not finite"
MODEL_INFEASIBLE = "INFEASIBLE (the ratio's LP was solved only at t = 0)"
#: The last sentence of a strict layer's SolverError; a metric loss drops it (strict=False
#: makes a NaN loss, not NaN rows).
NAN_ROWS_ADVICE = ". Pass strict=False to get NaN rows for failed items instead"


def check_options(
    options: dict[str, Any], allowed: frozenset[str], where: str, own: tuple[str, ...] = ()
) -> None:
    """Refuse unknown option names and bad values at construction: a typo (``tolerance=``
    for ``tol=``) or ``eps=-1`` used to surface at the first forward, once training had
    begun. ``own`` are the caller's own arguments, listed first and searched for a near
    match. ``warm_start`` here is the layer's flag (a loss's option), not a Solution."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*own, *allowed], n=1)
        guess = f" (did you mean {close[0]!r}?)" if close else ""
        takes = f"its arguments are {', '.join(own)}; " if own else ""
        raise DSLError(
            f"{where}: unknown option(s) {', '.join(map(repr, unknown))}{guess}; {takes}the "
            f"solver options are {', '.join(sorted(allowed))}"
        )
    try:
        check_solve_options(
            **{k: v for k, v in options.items() if k in SOLVE_OPTIONS - LAYER_OPTIONS}
        )
        for flag in ("strict", "warm_start", "check_denominator", "rescale_t"):
            if flag in options:
                check_bool(flag, options[flag])
    except DSLError as err:
        raise DSLError(f"{where}: {str(err).removeprefix('solve(): ')}") from None
    if options.get("layout", "auto") not in ("auto", "dense", "sparse"):
        raise DSLError(
            f"{where}: layout must be 'auto', 'dense' or 'sparse', got {options['layout']!r}"
        )


def _where(bad: torch.Tensor, shown: int = 5) -> str:
    """``"; items 3, 17"``: the first failed items of a batch (tuples for several batch
    dimensions), so that a batch of 32 scenarios need not be run again to find them."""
    if bad.dim() == 0:
        return ""
    places = bad.nonzero().tolist()
    names = [str(p[0]) if len(p) == 1 else str(tuple(p)) for p in places[:shown]]
    more = f" and {len(places) - shown} more" if len(places) > shown else ""
    return f"; item{'s' if len(places) > 1 else ''} {', '.join(names)}{more}"


def _kept(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached (only where it needs to be: each detach is an operation) and without
    ``torch.func``'s wrappers, to be kept beyond the call."""
    return unwrapped(t.detach() if t.requires_grad else t)


def _bounds(var: Any) -> tuple[Any, Any]:
    """``var``'s declared bounds for ``clamp``: a number where every entry has the same one,
    else a float64 array; ``None`` where it has none."""
    out = []
    for key, none in (("lb", -math.inf), ("ub", math.inf)):
        v = var.attrs.get(key)
        if v is not None and v.size == 0:  # a zero-size variable: flat[0] raised IndexError
            v = None
        elif v is not None and bool(np.all(v == v.flat[0])):
            v = None if float(v.flat[0]) == none else float(v.flat[0])
        out.append(v)
    return out[0], out[1]


def _within_bounds(out: torch.Tensor, bounds: tuple[Any, Any]) -> torch.Tensor:
    """``out`` with its entries past the declared ``bounds`` set onto them; the derivative
    passes through as it is. A certified point meets its rows to the certificate's tolerance,
    so a ``nonneg`` variable came back at -8e-21 (float64) or -5e-14 (float32 arithmetic), and
    ``x.sqrt()`` was NaN there (a reviewing helper's probe). Every item is snapped: the outputs
    of items that are not solved are replaced by NaN or raise."""
    lo, hi = (b if b is None or isinstance(b, float) else out.new_tensor(b) for b in bounds)
    if lo is None and hi is None:
        return out
    held = out.detach()
    snapped = held if lo is None else held.clamp_min(lo)  # (clamp takes no tensor and number)
    snapped = snapped if hi is None else snapped.clamp_max(hi)
    return out + (snapped - held)


def build_dtype(
    data: torch.dtype, device: torch.device, compute_dtype: torch.dtype | None
) -> torch.dtype:
    """The dtype an LP is built in from parameter values of dtype ``data``: the solve's
    arithmetic (``compute_dtype``, by default float64, float32 on MPS) where that is wider,
    so that the model's own constants are not rounded to the values' dtype."""
    return torch.promote_types(data, compute_dtype or wide_float(torch.float32, device))


class LPLayer(torch.nn.Module):
    """A differentiable layer that solves ``problem`` for the parameter values it is called with.

    Args:
        problem: an :class:`lpdsl.Problem`.
        parameters: every parameter of ``problem``, in the order the layer takes their values
            (default: ``problem.parameters()``).
        variables: the variables to return, in order (default: ``problem.variables()``).
        strict: if true, a batch item that is not solved to optimality raises
            :class:`~lpdsl.SolverError`; if false its outputs are NaN (with zero gradient)
            and the rest of the batch goes on.
        layout: how ``(A, b, c)`` are handed to the solver: ``"dense"``, ``"sparse"`` or
            ``"auto"`` (sparse when the compiled pattern is at most 10 % dense). Mostly the
            container only: :func:`lpdsl.solve` picks its linear algebra from the nonzeros
            either way (docs/solver.md §6), and the answer is the same to rounding. One
            exception: an ``A`` whose rows each have at most one nonzero (bounds only) is
            searched per variable, from ``eps = 1e-7``, only when it comes sparse
            (docs/solver.md §2), and a box whose costs differ by ~1e-6 can end ``MAX_ITER``
            dense where it is certified sparse, or the other way (docs/solver.md §10).
        warm_start: reuse the previous call's solution when the shapes match: it pays where
            item ``i`` of a call is close to item ``i`` of the previous one (slowly changing
            data: the previous optimum's active set is tried first, and an item where it
            still holds takes no Newton step; 200x20 LPs with b moved by 1e-4: 96 % fewer
            steps, 800x80: 43 %, docs/solver.md §9); with shuffled minibatches it costs
            (random 16x20 LPs: 39 against 21 ms a call, a reviewing helper), so pass
            ``False`` there. On an LP whose optimum is
            not unique the point returned then depends on the previous call (every one is
            optimal: same value; the value's gradient in cost parameters is that ``x``, one
            subgradient among the face's, as it depends on the point). Likewise at a
            degenerate vertex (more tight rows than variables: ``x`` is unique, its dual is
            not) the dual and the derivatives follow the previous call's active set, each a
            valid one (``x_1 <= 1, x_2 <= 1, x_1 + x_2 <= 2``: d sum(x)/db = (0.5, 0.5, 0.5)
            cold, (1, 1, 0) or (0, 0, 1) after nearby data; a reviewing helper). Pass ``False``
            where the same inputs must give the same ``x``, dual and gradients whatever came
            before (there, they can also depend on the rest of the batch, which shares the
            solver's stages). Calls with
            gradients and calls without (``torch.no_grad()``: evaluation between training
            steps) keep their own previous solution, so that a validation batch does not
            replace the training batch's.
        check_denominator: for a ratio objective, verify ``den > 0`` on the feasible set by
            solving ``min den`` too (a second LP of the same size; docs/compiler.md): where
            ``den`` is negative somewhere, Charnes–Cooper's answer covers ``den > 0`` only,
            and the item fails. ``False`` skips it where positivity is known (the metric
            losses prove it on their own).
        rescale_t: for a ratio objective, solve again, with ``t`` in other units, the items
            certified at a large ``|x|`` or ended MAX_ITER (:func:`solve_ratio_lp`;
            docs/compiler.md). ``False`` skips it where the model fixes the scale of ``x``
            (the metric losses: ``x`` in ``[0, 1]``), so that failing items do not pay for
            up to ``RATIO_ROUNDS`` more solves.
        **solve_options: keyword options of :func:`lpdsl.solve` (``eps``, ``rho``,
            ``max_iter``, ``tol``, ``backward``, ``compute_dtype``).

    Attributes:
        last_solution: the :class:`~lpdsl.Solution` of the last call, detached, in standard
            form (``x`` over the compiled columns, ``value``, ``dual``, ``status``; in the
            dtype the LP was built in, float64 unless ``compute_dtype`` is narrower): what
            ``lp.check(problem, ..., x=layer.last_solution.x[i])`` audits. The warm start
            comes from the last call made with gradients enabled or disabled as this one
            (``warm_start``); ``reset_warm_start()`` forgets both. Its ``status`` is the
            standard-form LP's: a ratio item can be OPTIMAL there and still fail, where its
            denominator is not positive (``check_denominator``) or ``x = y / t`` is not
            finite.
        last_ok: ``(*B,)`` bool, the items the last call returned as solved (the others
            raised, or are NaN rows with ``strict=False``); ``None`` where the last call
            raised before its items were judged (bad inputs, an output beyond its dtype).

    Gradients: an LP's solution is piecewise constant in its costs, so where only cost
    parameters are learned (decision-focused learning: ``c = net(features)``, a loss on
    ``x``) ``dx/dc`` is 0 almost everywhere, and a loss on ``x`` trains nothing with the
    default ``backward="active"`` (``"unroll"`` gives an O(eps) signal); use the optimal
    value's gradient (``d value/dc = x``) or a surrogate such as SPO+ there. Gradients with
    respect to the rows (``A``, ``b``) are the active set's and are not zero.

    Dtypes follow the parameter values (SPEC §4): the outputs come back in their dtype; the
    LP itself is built in the solve's arithmetic where that is wider (float64 unless
    ``compute_dtype`` is narrower), so that the model's constants (``1/3``, ``0.8``) are not
    rounded to float32 or float16. A problem without parameters returns torch's default dtype.

    Example:
        >>> layer = lp.LPLayer(prob, parameters=[s, y], variables=[z, t])
        >>> z_star, t_star = layer(s_tensor, y_tensor)  # or layer(scores=..., labels=...)
    """

    def __init__(
        self,
        problem: Any,
        parameters: list[Any] | None = None,
        variables: list[Any] | None = None,
        *,
        strict: bool = True,
        layout: str = "auto",
        warm_start: bool = True,
        check_denominator: bool = True,
        rescale_t: bool = True,
        **solve_options: Any,
    ) -> None:
        super().__init__()
        if not isinstance(problem, Problem):
            raise DSLError(
                f"LPLayer: expected an lpdsl.Problem, got {type(problem).__name__}; declare the "
                "model with lp.Problem(objective, constraints)"
            )
        own = (
            "parameters",
            "variables",
            "strict",
            "layout",
            "warm_start",
            "check_denominator",
            "rescale_t",
        )
        check_options(solve_options, SOLVE_OPTIONS - {"warm_start"}, "LPLayer", own)
        flags = {"strict": strict, "layout": layout, "warm_start": warm_start}
        flags.update(check_denominator=check_denominator, rescale_t=rescale_t)
        check_options(flags, LAYER_OPTIONS | {"check_denominator", "rescale_t"}, "LPLayer")
        for what, given in (("parameters", parameters), ("variables", variables)):
            if isinstance(given, Expression):  # list() would iterate its entries
                raise DSLError(
                    f"LPLayer: `{what}` must be a list but got one expression, "
                    f"{names([given])}; pass {what}=[{given.name or '...'}]"
                )
        declared = list(problem.parameters())
        self.parameters_ = declared if parameters is None else list(parameters)
        self._check_same(self.parameters_, declared, "parameters", "problem.parameters()")
        self.compiled = problem.compile()
        user_vars = list(self.compiled.variables)
        self.variables_ = user_vars if variables is None else list(variables)
        unknown = [v for v in self.variables_ if not any(v is u for u in user_vars)]
        if unknown:
            raise DSLError(
                f"LPLayer: variables [{names(unknown)}] are not variables of the problem "
                f"(it has [{names(user_vars)}]); pass a subset of problem.variables()"
            )
        if layout == "auto":
            layout = auto_layout(self.compiled.pattern)
        self.layout = layout
        self.strict = bool(strict)
        self.warm_start = bool(warm_start)
        self.check_denominator = bool(check_denominator)
        self.rescale_t = bool(rescale_t)
        self.solve_options = dict(solve_options)
        # positions of the layer's inputs in the compiler's parameter order
        self._order = [next(i for i, p in enumerate(self.parameters_) if p is q) for q in declared]
        self.last_solution: Solution | None = None
        self.last_ok: torch.Tensor | None = None
        self._bounds = [_bounds(v) for v in self.variables_]  # (_within_bounds)
        # the warm starts: the last solution of calls with and without gradients (an
        # evaluation between training steps replaced the training batch's: 1,341 -> 3,770
        # iterations over 40 steps of a reviewing helper's loop)
        self._previous: dict[bool, Solution] = {}

    def extra_repr(self) -> str:
        """What the layer takes and returns, and the options that differ from the defaults
        (its repr was ``LPLayer()``: a reviewing helper)."""
        parts = [f"parameters=[{names(self.parameters_)}]", f"variables=[{names(self.variables_)}]"]
        flags = ("strict", "warm_start", "check_denominator", "rescale_t")  # default True
        parts += [f"{k}=False" for k in flags if not getattr(self, k)]
        parts.append(f"layout={self.layout!r}")
        parts += [f"{k}={v!r}" for k, v in self.solve_options.items()]
        return ", ".join(parts)

    def reset_warm_start(self) -> None:
        """Forget the solutions the next calls would warm-start from (e.g. when the data
        change abruptly); ``last_solution`` is kept."""
        self.__dict__["_previous"] = {}

    @staticmethod
    def _check_same(given: list[Any], declared: list[Any], what: str, where: str) -> None:
        missing = [p for p in declared if not any(p is g for g in given)]
        extra = [g for g in given if not any(g is p for p in declared)]
        dup = [g for k, g in enumerate(given) if any(g is h for h in given[:k])]
        if missing or extra or dup:
            parts = []
            if missing:
                parts.append(f"missing [{names(missing)}]")
            if extra:
                parts.append(f"not in the problem [{names(extra)}]")
            if dup:
                parts.append(f"listed twice [{names(dup)}]")
            raise DSLError(
                f"LPLayer: `{what}` must list each of {where} exactly once: {'; '.join(parts)}"
            )

    @eager  # a torch.compile region runs it eagerly (docs/architecture.md)
    def forward(self, *values: Any, **named: Any) -> tuple[torch.Tensor, ...]:
        """Solve for ``values`` (in the order of ``parameters``); returns the variables.

        The values may also be given by parameter name (``layer(scores=s, labels=y)``) or as
        one dict ``{parameter: value}``, as ``standard_form`` takes them. A variable's
        declared bounds (``nonneg``, ``lb``, ``ub``) hold exactly in the outputs of solved
        items (a certified point meets them to the solver's tolerance; the entries past
        them are set onto them, and the derivative passes through as it is).
        """
        self.last_ok = None  # (a call that raises before its items are judged leaves None)
        if named:
            if values:
                raise DSLError(
                    "LPLayer: pass the inputs either positionally or by name, not both "
                    f"(got {len(values)} positional and {sorted(named)} by name)"
                )
            by_name = {p.name: p for p in self.parameters_}
            if len(by_name) != len(self.parameters_):
                raise DSLError(
                    f"LPLayer: two parameters share a name ([{names(self.parameters_)}]); "
                    "pass the inputs positionally or as a dict {parameter: value}"
                )
            unknown = sorted(set(named) - set(by_name))
            if unknown:
                raise DSLError(
                    f"LPLayer: no parameter named {unknown}; its parameters are "
                    f"[{names(self.parameters_)}]"
                )
            values = ({by_name[k]: v for k, v in named.items()},)
        if len(values) == 1 and isinstance(values[0], Mapping):
            values = tuple(v for _, v in order(self.parameters_, values[0]))
        if len(values) != len(self.parameters_):
            raise DSLError(
                f"LPLayer expects {len(self.parameters_)} input(s) in the order "
                f"[{names(self.parameters_)}], got {len(values)}"
            )
        ordered = [values[i] for i in self._order]
        # The LP is built in the solve's arithmetic where that is wider than the values'
        # dtype (float64 by default; without parameters in float64, as the constants are the
        # data), and the outputs come back in the values' dtype (torch's default without
        # parameters). Built in the values' dtype, the model's own constants were rounded to
        # it: sum_largest(v, 3) / 3's costs 1/3 became 0.33333334 in float32 beside k (1/k) =
        # 1.0, a tilt of ~1e-8 along an optimal face, and 16 of 640 float32 batch items ended
        # MAX_ITER (a probing helper, 26th pass); x0 == 0.1 beside 3 x0 == 0.3 ended MAX_ITER
        # (a fuzzing helper, twentieth pass). Half values are solved as float32 at least: the
        # LP's value and dual, which the layer does not return, may lie beyond float16's
        # range where x does not (AUCLoss on 512 float16 scores: "the optimal value reaches
        # 8.21e+04"). `rounded`: the dtype the parameter values were rounded to (None: none).
        if self.parameters_:
            data, device = value_format(self.compiled.parameters, ordered)
            build = build_dtype(data, device, self.solve_options.get("compute_dtype"))
            rounded = data
        else:
            data, build, rounded = torch.get_default_dtype(), torch.float64, None
        A, b, c = self.compiled.standard_form(*ordered, layout=self.layout, dtype=build)
        grad_mode = torch.is_grad_enabled()
        previous = self.__dict__.setdefault("_previous", {})  # (a layer pickled before it)
        warm = previous.get(grad_mode) if self.warm_start else None
        if warm is not None and warm.y.shape != c.shape:
            warm = None
        try:
            if self.compiled.is_ratio and self.rescale_t:
                sol = solve_ratio_lp(A, b, c, warm_start=warm, **self.solve_options)
            else:
                sol = solve(A, b, c, warm_start=warm, **self.solve_options)
        except DataScaleError as err:
            # solve()'s refusal of the numbers speaks of A, b and c, which the user never
            # wrote (x / q with q = 1e-200: "divide a row of A and its b")
            raise err.reworded(
                "LPLayer: the LP made from the parameter values was refused",
                "Rescale the parameter values or the model's constants",
            ) from None
        # x copied: the outputs are views of the solve's x, and a user's in-place edit of one
        # (out.mul_(0)) rewrote last_solution.x, which lp.check then audited (a verifying
        # helper, 26th pass); dual, value and the rest are not returned. (Cloned before
        # unwrapping: under torch.func a clone of the unwrapped tensor is wrapped again.)
        kept = {f.name: _kept(getattr(sol, f.name)) for f in fields(sol) if f.name != "x"}
        self.last_solution = replace(sol, x=_kept(sol.x.detach().clone()), **kept)
        previous[grad_mode] = self.last_solution
        recovered = self.compiled.recover(sol.x, precision=sol.y.dtype)  # y: the solve's dtype
        bounds = self.__dict__.get("_bounds") or [_bounds(v) for v in self.variables_]
        outs = [
            _within_bounds(recovered[v], bd) for v, bd in zip(self.variables_, bounds, strict=True)
        ]
        if any(out.dtype != data for out in outs):  # an optimum beyond data's range refused
            wider = "float64" if data == torch.float32 else "float32 or float64"
            source = (
                f"the dtype of the parameter values; pass them as {wider}"
                if self.parameters_
                else f"torch's default dtype (set it to {wider})"
            )
            outs = [
                self._narrowed(v, out, data, sol.status, source)
                for v, out in zip(self.variables_, outs, strict=True)
            ]
        ok = sol.status == int(Status.OPTIMAL)
        batch = tuple(sol.status.shape)
        den_status = None
        if self.compiled.is_ratio and self.check_denominator and bool(ok.any()):
            den_status = self._denominator_status(A, b)
            ok = ok & (den_status == 0)
        for out in outs:
            # a ratio model whose denominator vanished recovers NaN although the LP is solved
            if not all_finite(out):
                ok = ok & flatten_tail(torch.isfinite(out.detach()), len(batch)).all(-1)
        self.last_ok = _kept(ok)  # (not a torch.func wrapper: the layer is copied and saved)
        if bool(ok.all()):
            return tuple(outs)
        if self.strict:
            raise SolverError(
                self._failure_message(sol, ok, self.compiled.is_ratio, den_status, rounded)
            )
        return tuple(
            torch.where(ok.reshape((*batch, *([1] * len(v.shape)))), out, out.new_tensor(torch.nan))
            for v, out in zip(self.variables_, outs, strict=True)
        )

    @staticmethod
    def _narrowed(
        var: Any, out: torch.Tensor, dtype: torch.dtype, status: torch.Tensor, source: str
    ) -> torch.Tensor:
        """A variable's optimum in the (narrower) dtype of the inputs, refused where it
        overflows (float16's max is 65504, float32's 3.4e38; the LP was built wider)."""
        low = out.to(dtype)
        shape = tuple(status.shape) + (1,) * (out.dim() - status.dim())
        ok = (status == int(Status.OPTIMAL)).reshape(shape)
        if bool((torch.isinf(low) & torch.isfinite(out) & ok).any()):
            top = float(torch.where(ok, out.detach().abs(), 0.0).amax())
            raise DSLError(
                f"LPLayer: the optimal {getattr(var, 'name', None) or 'variable'} reaches "
                f"{top:.3g}, beyond the range of {dtype} (max {torch.finfo(dtype).max:.3g}), "
                f"{source}"
            )
        return low

    def _denominator_status(self, A: Any, b: torch.Tensor) -> torch.Tensor:
        """Items whose ratio denominator is not shown positive on the feasible set, ``(*B,)``:
        by ``min den`` over it (``solvers.ratio.denominator_lp``), UNBOUNDED or below zero,
        or not solved (MAX_ITER: no evidence either way), or INFEASIBLE: a Farkas ray of the
        model's own rows, so the model has no feasible point although its Charnes–Cooper LP
        was solved — with a variable unbounded along a direction where den grows that LP
        keeps points at ``t = 0`` (a reviewing helper's fuzz: ``min (y + 1) / (x + 1)``,
        ``x >= 0``, ``0 <= y <= 1``, ``y >= 2``). Returns the den LP's status where that is
        not OPTIMAL, -1 where den is negative, else 0.
        """
        with torch.no_grad():
            A_x, b_x, q, q0 = denominator_lp(A, b)
            options = {k: v for k, v in self.solve_options.items() if k != "backward"}
            low = solve(A_x, b_x, q, **options)
            den_min = low.value + q0
            # relative to den's own terms (a verifying helper: with 1 + |q0| + |q.x| and
            # 1e3 sqrt(eps), den = 1e-6 (x - 0.5) and x - 1e-5 on [0, 1] passed); the 1 in
            # |x_i| + 1 keeps den = y at its boundary point y = 0 from counting as negative
            scale = q0.abs() + (q.abs() * (low.x.abs() + 1.0)).sum(-1)
            tol = options.get("tol") or default_tol(low.y.dtype)
            negative = (low.status == int(Status.OPTIMAL)) & (den_min < -10 * tol * scale)
            return torch.where(negative, -1, low.status)

    def _failure_message(
        self,
        sol: Solution,
        ok: torch.Tensor,
        ratio: bool,
        den_status: torch.Tensor | None = None,
        rounded: torch.dtype | None = None,
    ) -> str:
        bad = ~ok
        counts: dict[str, int] = {}
        for i, s in enumerate(sol.status[bad].reshape(-1).tolist()):
            name = Status(int(s)).name
            den = 0 if den_status is None else int(den_status[bad].reshape(-1)[i])
            if name == "OPTIMAL" and den in (-1, int(Status.UNBOUNDED)):
                name = DEN_NEGATIVE
            elif name == "OPTIMAL" and den == int(Status.INFEASIBLE):
                name = MODEL_INFEASIBLE
            elif name == "OPTIMAL" and den:
                name = f"{DEN_UNVERIFIED} ({Status(den).name})"
            elif name == "OPTIMAL":
                name = NOT_FINITE
            counts[name] = counts.get(name, 0) + 1
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        hint = ""
        if MODEL_INFEASIBLE in counts:
            hint = (
                " (the model's constraints have no feasible point: min den over them is "
                "INFEASIBLE; Charnes–Cooper's LP keeps points with t = 0 where a variable is "
                "unbounded along a direction in which den grows, so it looked solvable)"
            )
        optimal = sol.status == int(Status.OPTIMAL)
        # the INFEASIBLE items whose own rows are shown empty (min den is INFEASIBLE): their
        # denominator is not the cause (a mixed batch got the "negative denominator" hint)
        infeasible = (sol.status == int(Status.INFEASIBLE))[bad]
        proven_empty = den_status is not None and bool(
            (den_status[bad] == int(Status.INFEASIBLE))[infeasible].all()
        )
        unproven = den_status is not None and bool(
            ((den_status != 0) & (den_status != int(Status.INFEASIBLE)) & optimal)[bad].any()
        )
        if unproven:
            hint += (
                " (Charnes–Cooper needs the ratio's denominator positive on the whole feasible "
                "set: add constraints that keep it positive, or negate both parts; "
                "check_denominator=False skips the check where you know it is)"
            )
        elif ratio and "INFEASIBLE" in counts and not proven_empty:
            # docs/compiler.md: Charnes-Cooper's LP has no point with t > 0 where den < 0
            hint += (
                " (a ratio objective's LP is also INFEASIBLE where its denominator is "
                "negative on the feasible set: write the ratio with a positive denominator)"
            )
        if ratio and "UNBOUNDED" in counts:
            # docs/compiler.md: the ratio grows without bound as den -> 0+ (a reviewing
            # helper's model said only "check that the model is ... bounded")
            hint += (
                " (a ratio objective is unbounded where its denominator comes arbitrarily "
                "close to 0 on the feasible set while its numerator does not, or where the "
                "feasible set reaches to infinity along a direction in which the numerator "
                "grows faster than the denominator: keep the denominator away from 0, e.g. "
                "den >= a small positive number, or bound the variables)"
            )
        if NOT_FINITE in counts:
            # charnes_cooper.unscale: t <= 1e3 eps max|y| reads as t = 0, capping |x|
            cap = recover_cap(sol.y.dtype)
            shown = f"{cap:,.0f}" if cap < 1e6 else f"{cap:.2g}"
            hint += (
                " (x = y / t needs t > 0: t is 0 where the ratio's optimum lies at infinity "
                "or its denominator is not positive, and counts as 0 where |x| would exceed "
                f"{shown}, the largest a {str(sol.y.dtype).removeprefix('torch.')} solve recovers"
                + (": compute in float64 (compute_dtype=None)" if cap < 1e6 else "")
                + "; docs/compiler.md)"
            )
        if rounded not in (None, torch.float64) and (
            "INFEASIBLE" in counts or "MAX_ITER" in counts
        ):
            # softmax marginals of a transport model in float32 summed to 1 + 2.2e-8 and
            # 1 + 1.5e-8: its equalities had no common point, 19 of 20 instances failed (a
            # reviewing helper's program); the solve is in float64, so the rounding is real
            hint += (
                f" (the parameter values are {str(rounded).removeprefix('torch.')}: data that "
                "must agree exactly, such as marginals with equal totals or supplies that "
                "sum to the demands, can disagree by its rounding, which leaves equality rows "
                "with no common point; compute them in float64 and make them agree, or "
                "loosen tol, e.g. tol=1e-7)"
            )
        return (
            f"LPLayer: {int(bad.sum())} of {bad.numel()} batch item(s) were not solved to "
            f"optimality ({listed}{_where(bad)}). Check that the model is feasible and bounded "
            f"for these inputs{hint}{self._max_iter_advice(sol, bad)}{NAN_ROWS_ADVICE}"
        )

    def _max_iter_advice(self, sol: Solution, bad: torch.Tensor) -> str:
        """Whether raising ``max_iter`` can help the items that ended ``MAX_ITER``.

        An item also ends ``MAX_ITER`` when the ε schedule runs out (docs/solver.md §3)
        before the budget does: a badly scaled LP (variables in units 1e-3 to 1e3) stopped
        after 25-32 iterations whatever ``max_iter`` was, and the message said to raise it (a
        reviewing helper's probe). A ratio model's iterations add up its solves
        (:func:`solve_ratio_lp`), so there the budget can look spent when no one solve spent
        it, and the advice is to raise it."""
        stuck = bad & (sol.status == int(Status.MAX_ITER))
        if not bool(stuck.any()):
            return ""
        budget = self.solve_options.get("max_iter") or DEFAULT_MAX_ITER
        if bool((sol.iterations[stuck] >= budget).any()):
            if budget < DEFAULT_MAX_ITER:
                return f", or raise max_iter (now {budget})"
            # a spent default budget is most often Newton cycling at an ill-conditioned
            # optimum: FBetaLoss(0.01) on a batch of 3 positives and saturated scores spent
            # 5,000 iterations as it spent 500, and tol=1e-5 certified it (a training helper)
            return (
                f", or raise max_iter (now {budget}); where that does not help, the optimum may "
                "be ill-conditioned (nearly parallel rows meeting there, as at saturated scores "
                f"in a ratio loss) and need a looser tol, e.g. tol=1e-5 (now {self._tol(sol)})"
            )
        most = int(sol.iterations[stuck].max())
        return (
            f"; MAX_ITER items stopped after at most {most} of max_iter={budget} iterations, "
            "when the continuation in eps ended without a certified solution, so raising "
            "max_iter will not help: rescale variables or rows whose coefficients span many "
            "orders of magnitude to similar units"
            + (
                ", or compute in float64 (compute_dtype=None)"
                if sol.y.dtype != torch.float64 and sol.y.device.type != "mps"
                else ""
            )
            # a ratio whose denominator nearly cancels at the optimum (1e-4 from terms ~4)
            # has t ~ 1e4 along a nearly flat row: its active system's rounding exceeded the
            # default tol, and only tol=1e-7 certified it (a reviewing helper's case)
            + f"; an ill-conditioned optimum (nearly parallel rows meeting there, as where a "
            f"ratio's denominator nearly cancels) may need a looser tol (now {self._tol(sol)})"
        )

    def _tol(self, sol: Solution) -> str:
        """The certificate tolerance in force, for messages."""
        tol = self.solve_options.get("tol")
        return f"{tol:g}" if tol is not None else f"{default_tol(sol.y.dtype):g}, the default"
