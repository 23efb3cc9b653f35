"""The CVXPY oracle: rebuild a declared model in CVXPY and check lpdsl's answers against it.

Why it exists: lpdsl's compiler turns a model into ``min c·x s.t. A x <= b`` by its own
passes (epigraph rows for atoms, bounds as rows, equalities as row pairs, Charnes–Cooper for
ratios). An error in any of them yields a *different LP* that still solves cleanly. The only
way to catch that is to solve the *original* model by an independent route and compare.

Independence is the point: :func:`to_cvxpy` reads the declared expression tree
(``docs/architecture.md``) and maps every node to CVXPY's own expression or atom. It never
calls the compiler; atoms are handed to CVXPY's canonicalisation, ratios are solved by
Dinkelbach's method here (not by Charnes–Cooper, the compiler's route). Only :func:`check`
touches the compiler, to obtain the answer under test (and names recover's cap,
``recover_cap``, in its messages).

CVXPY is imported inside the functions so that ``import lpdsl`` stays light (SPEC §5).
"""

from __future__ import annotations

import difflib
import functools
import math
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lpdsl.compiler.charnes_cooper import recover_cap
from lpdsl.errors import DSLError, SolverError
from lpdsl.expressions import Expression, Ratio, Variable, describe, walk
from lpdsl.problem import Problem
from lpdsl.rendering import to_text
from lpdsl.solvers import Status, solve
from lpdsl.solvers.ratio import denominator_lp, solve_ratio_lp
from lpdsl.sparse import SparseMatrix, auto_layout
from lpdsl.validation import check_readable, real_tensor
from lpdsl.values import bind

if TYPE_CHECKING:
    import cvxpy as cp

    from lpdsl.expressions import Expression, Variable

__all__ = ["CheckReport", "OracleSolution", "check", "solve_with_cvxpy", "to_cvxpy"]

#: Status strings shared by both sides of a :class:`CheckReport`.
OPTIMAL, INFEASIBLE, UNBOUNDED = "optimal", "infeasible", "unbounded"
#: The model breaks the ratio precondition ``den > 0`` on the feasible set (SPEC §1).
DEN_NOT_POSITIVE = "den_not_positive"
#: ``min den`` at or below this counts as "den reaches 0": an interior-point CVXPY solver
#: returns a minimum of 0 as ~1e-9 (Clarabel gave 1.2e-9 for ``max (x+1)/(1-y)``, 0 <= y <= 1,
#: and Dinkelbach then chased den -> 0 to a "ratio" of -3e11).
DEN_TOL = 1e-7
#: The ratio's bisection (unbounded Dinkelbach steps) gives up, FAILED, where its lower
#: bracket lies this many times the first feasible ratio below it.
BISECT_FAR = 1e6
#: A solver gave up (iteration limit, numerical trouble) or the backend failed.
FAILED = "failed"


# --------------------------------------------------------------------------------------------
# tree -> CVXPY


def _cvxpy() -> Any:
    """Import CVXPY on first use, with an actionable message if it is missing."""
    try:
        import cvxpy
    except ImportError as err:  # pragma: no cover - cvxpy is a runtime dependency
        raise ImportError(
            "the lpdsl oracle needs CVXPY: pip install cvxpy (it is a dependency of lpdsl)"
        ) from err
    return cvxpy


def _is_num(value: Any) -> bool:
    """Whether a translated node is plain numeric data (it depends on no variable).

    numpy scalars count too: operations on 0-d arrays return ``np.float64``, not arrays.
    """
    return isinstance(value, (np.ndarray, np.generic))


def _cx(value: Any) -> Any:
    """Wrap numeric data as a CVXPY constant, so mixed operations dispatch to CVXPY.

    Without it, ``ndarray + cp.Expression`` lets numpy broadcast over the expression as an
    object array.
    """
    if _is_num(value):
        return _cvxpy().Constant(value)
    return value


def _vec(value: Any) -> Any:
    """Row-major flattening, the order of the tree's ``flat`` indices and of numpy."""
    return _cvxpy().vec(value, order="C")


def _as_declared(node: Expression, value: Any) -> Any:
    """An elementwise result in the tree's (numpy's) shape: CVXPY treats a ``(1, 1)`` operand
    as a scalar (``(3,) + (1, 1)`` is ``(3,)`` there, ``(1, 3)`` in numpy). Broadcasting only
    adds axes of size 1, so where the sizes agree a row-major reshape is exact."""
    shape = tuple(node.shape)
    if tuple(value.shape) != shape and value.size == math.prod(shape):
        return _cvxpy().reshape(value, shape, order="C")
    return value


def _op_add(node: Expression, a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return a + b
    return _as_declared(node, _cx(a) + _cx(b))


def _op_neg(node: Expression, a: Any) -> Any:
    return -a


def _op_mul(node: Expression, a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return a * b
    return _as_declared(node, _cvxpy().multiply(_cx(a), _cx(b)))


def _op_div(node: Expression, a: Any, b: Any) -> Any:
    if not _is_num(b):  # the declaration layer makes a Ratio instead; keep the contract honest
        raise DSLError(
            "oracle: a 'div' node has a variable-dependent divisor; only a Ratio objective may "
            "divide by variables (this is a bug in the tree, please report it)"
        )
    zero = int(np.size(b) - np.count_nonzero(b))
    if zero:  # 1 / 0: CVXPY took inf coefficients, standard_form refuses them
        den = node.args[1]
        raise DSLError(
            f"oracle: division by zero: the divisor `{describe(den)}` (shape {den.shape}) is "
            f"zero in {zero} entr{'y' if zero == 1 else 'ies'} of the parameter values given; "
            "pass data that keep it nonzero"
        )
    if _is_num(a):
        return a / b
    return _as_declared(node, _cvxpy().multiply(a, 1.0 / b))


def _op_matmul(node: Expression, a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return np.asarray(a @ b, dtype=np.float64)
    return _cx(a) @ _cx(b)


def _axis_reduction(name: str) -> Callable[[Expression, Any], Any]:
    """The translation of ``sum``, ``max`` or ``min`` over ``attrs["axis"]``: numpy's method
    for numeric data, CVXPY's atom of the same name otherwise."""

    def translate(node: Expression, a: Any) -> Any:
        axis = node.attrs.get("axis")
        if _is_num(a):
            return np.asarray(getattr(a, name)(axis=axis), dtype=np.float64)
        return getattr(_cvxpy(), name)(a, axis=axis)

    return translate


def _elementwise_extremum(name: str) -> Callable[..., Any]:
    """The translation of ``maximum`` or ``minimum`` of several operands (numpy's or CVXPY's
    function of the same name)."""

    def translate(node: Expression, *parts: Any) -> Any:
        if all(_is_num(p) for p in parts):
            return functools.reduce(getattr(np, name), parts)
        return _as_declared(node, getattr(_cvxpy(), name)(*[_cx(p) for p in parts]))

    return translate


def _op_transpose(node: Expression, a: Any) -> Any:
    if _is_num(a):
        return np.array(a.T)
    return _cvxpy().transpose(a) if len(a.shape) >= 2 else a


def _op_reshape(node: Expression, a: Any) -> Any:
    shape = tuple(node.attrs["shape"])
    if _is_num(a):
        return a.reshape(shape)
    return _cvxpy().reshape(a, shape, order="C")


def _op_index(node: Expression, a: Any) -> Any:
    flat = np.asarray(node.attrs["flat"], dtype=np.int64)
    if flat.size == 0:
        raise DSLError(
            f"oracle: indexing with key {node.attrs.get('key')!r} selects no entries; CVXPY "
            "has no empty expressions, so the oracle cannot rebuild this model"
        )
    if _is_num(a):
        return a.reshape(-1)[flat]
    return _cvxpy().reshape(_vec(a)[flat.reshape(-1)], flat.shape, order="C")


def _op_concatenate(node: Expression, *parts: Any) -> Any:
    axis = int(node.attrs["axis"])
    if all(_is_num(p) for p in parts):
        return np.concatenate(parts, axis=axis)
    return _cvxpy().concatenate([_cx(p) for p in parts], axis=axis)


def _op_abs(node: Expression, a: Any) -> Any:
    return np.abs(a) if _is_num(a) else _cvxpy().abs(a)


def _op_pos(node: Expression, a: Any) -> Any:
    return np.maximum(a, 0.0) if _is_num(a) else _cvxpy().pos(a)


def _op_sum_largest(node: Expression, a: Any) -> Any:
    k = int(node.attrs["k"])
    if _is_num(a):
        return np.asarray(np.sort(a.reshape(-1))[::-1][:k].sum(), dtype=np.float64)
    if k >= int(np.prod(a.shape, dtype=np.int64)):
        # Exactly sum(a); also sidesteps CVXPY 1.9's sum_largest canonicaliser, which fails
        # ("zero-size array to reduction") for k == size once the variables hold values.
        return _cvxpy().sum(a)
    return _cvxpy().sum_largest(_vec(a), k)


def _op_norm1(node: Expression, a: Any) -> Any:
    if _is_num(a):
        return np.asarray(np.abs(a).sum(), dtype=np.float64)
    return _cvxpy().norm1(_vec(a))


#: One translation per ``op`` of the tree contract (leaves are handled in :func:`_translate`).
_OPS: dict[str, Callable[..., Any]] = {
    "add": _op_add,
    "neg": _op_neg,
    "mul": _op_mul,
    "div": _op_div,
    "matmul": _op_matmul,
    "sum": _axis_reduction("sum"),
    "transpose": _op_transpose,
    "reshape": _op_reshape,
    "index": _op_index,
    "concatenate": _op_concatenate,
    "abs": _op_abs,
    "pos": _op_pos,
    "maximum": _elementwise_extremum("maximum"),
    "minimum": _elementwise_extremum("minimum"),
    "max": _axis_reduction("max"),
    "min": _axis_reduction("min"),
    "sum_largest": _op_sum_largest,
    "norm1": _op_norm1,
}


@dataclass
class _Row:
    """One declared constraint (or variable bound) as ``diff <= 0`` / ``>= 0`` / ``== 0``.

    Kept apart from the CVXPY constraint so that a point's violation is computed from the
    original expressions (atoms evaluated as atoms, not through their epigraphs).
    """

    label: str
    diff: Any
    sense: str


@dataclass
class _Model:
    """Everything :func:`to_cvxpy` builds, for the solve and check routines of this module."""

    problem: Any
    sense: str  # "min" | "max"
    objective: Any  # CVXPY scalar expression (or numpy scalar) for an affine/convex objective
    num: Any  # ratio numerator, else None
    den: Any  # ratio denominator, else None
    constraints: list[Any]
    rows: list[_Row]
    variables: dict[Any, Any]
    #: ``(CVXPY variable, its affine definition)`` for each shared subexpression, in an order
    #: where a definition reads only earlier ones (:func:`_translate`)
    shared: list[tuple[Any, Any]] = field(default_factory=list)
    #: the same model without the shared variables (:func:`_solve_model`'s fallback)
    plain: Callable[[], _Model] | None = None

    @property
    def is_ratio(self) -> bool:
        return self.den is not None

    def fill_shared(self) -> None:
        """Give the shared subexpressions' variables their values at the user variables'
        current values (for evaluating rows and objectives at a point not solved by CVXPY)."""
        for var, definition in self.shared:
            var.value = definition.value


def _numeric(value: Any) -> np.ndarray:
    """Float64 numpy copy of a bound parameter value (torch tensors are detached)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    return np.array(value, dtype=np.float64)


def _bind(problem: Problem, values: Sequence[Any]) -> dict[Any, np.ndarray]:
    """Validate parameter values exactly as lpdsl does, for one (unbatched) instance.

    Delegates to :func:`lpdsl.values.bind` so that the oracle and the compiler reject the same
    inputs with the same messages. The oracle solves one instance at a time: batched values
    are a :class:`DSLError` (loop over the batch and call once per item).
    """

    params = list(problem.parameters())
    tensors, _ = bind(params, tuple(values), batched=False)
    return {p: _numeric(v) for p, v in zip(params, tensors, strict=True)}


def _translate(
    roots: Sequence[Any],
    env: dict[Any, np.ndarray],
    variables: dict[Any, Any],
    shared: list[tuple[Any, Any]] | None,
) -> Any:
    """Translate every node below ``roots`` (post-order, shared subtrees once); return a map.

    Nodes without variables are evaluated to numpy arrays, so parameter products and
    divisions by parameter expressions are exact numbers in the CVXPY model. An affine node
    with variables that two or more operations read becomes a CVXPY variable of its own,
    defined by an equality, appended to ``shared``: CVXPY expands shared subexpressions into
    a tree, and ``lp.check`` of a moving average ``s = 0.5 (s[:-1] + s[1:])`` applied 16 times
    took 25 s, 18 times over 150 s (a reviewing helper, twentieth pass); 0.1 s now. Not with
    ``shared=None``.
    """

    cp = _cvxpy()
    nodes = list(walk(list(roots)))
    readers: dict[int, int] = {}
    for node in nodes:
        for a in node.args:
            readers[id(a)] = readers.get(id(a), 0) + 1
    out: dict[int, Any] = {}
    for node in nodes:
        op = node.op
        if op == "variable":
            var = variables.get(node)
            if var is None:
                var = cp.Variable(node.shape, name=node.name)
                variables[node] = var
            out[id(node)] = var
        elif op == "parameter":
            out[id(node)] = env[node]
        elif op == "constant":
            out[id(node)] = np.asarray(node.attrs["value"], dtype=np.float64)
        else:
            fn = _OPS.get(op)
            if fn is None:
                raise DSLError(
                    f"oracle: no CVXPY translation for op {op!r} (shape {node.shape}); the "
                    f"oracle knows {sorted(_OPS)}"
                )
            with np.errstate(over="ignore", invalid="ignore"):
                value = fn(node, *[out[id(a)] for a in node.args])
            if _is_num(value):
                value = np.asarray(value, dtype=np.float64)
                if not np.isfinite(value).all():
                    # every parameter value is finite (checked in _bind): standard_form
                    # refuses this too, where CVXPY took inf coefficients
                    raise DSLError(
                        f"oracle: `{describe(node)}` (shape {node.shape}) computed from the "
                        f"parameter values holds {int((~np.isfinite(value)).sum())} NaN/Inf "
                        "entries although every value is finite: the arithmetic overflows; "
                        "rescale the data"
                    )
            if tuple(value.shape) != tuple(node.shape):
                raise DSLError(
                    f"oracle: op {op!r} gave shape {tuple(value.shape)} in CVXPY but the tree "
                    f"declares {tuple(node.shape)}"
                )
            if (
                shared is not None
                and readers.get(id(node), 0) >= 2
                and not _is_num(value)
                and value.is_affine()
            ):
                var = cp.Variable(node.shape)
                shared.append((var, value))
                value = var
            out[id(node)] = value
    return out


def _bound_rows(var: Any, cvar: Any) -> tuple[list[_Row], list[Any]]:
    """The bounds of one variable (``nonneg`` already folded into ``lb``) as rows."""
    rows: list[_Row] = []
    cons: list[Any] = []
    for key, sense in (("lb", ">="), ("ub", "<=")):
        bound = var.attrs.get(key)
        if bound is None:
            continue
        bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), var.shape)
        finite = np.isfinite(bound)
        if not finite.any():
            continue
        if finite.all():
            diff = cvar - bound
        else:
            idx = np.flatnonzero(finite.reshape(-1))
            diff = _vec(cvar)[idx] - bound.reshape(-1)[idx]
        label = f"{var.name} {sense} {key}"
        rows.append(_Row(label, diff, sense))
        cons.append(diff >= 0 if sense == ">=" else diff <= 0)
    return rows, cons


def _constraint_label(index: int, con: Any) -> str:
    try:
        text = to_text(con, 60)
    except Exception:  # rendering is another module's job; a label must never fail a check
        text = f"{con.sense} constraint of shape {getattr(con, 'shape', '?')}"
    if len(text) > 60:
        text = text[:57] + "..."
    return f"constraint {index} ({text})"


def _require_problem(problem: Any, where: str) -> None:
    """A CompiledProblem or anything else failed deep inside (``'list' object is not
    callable``): the oracle rebuilds the declared model, so it needs the Problem."""

    if not isinstance(problem, Problem):
        todo = (
            "pass the Problem it was compiled from, compiled.problem"
            if hasattr(problem, "problem")
            else "declare the model with lp.Problem(objective, constraints)"
        )
        raise DSLError(f"{where}: expected an lpdsl.Problem, got {type(problem).__name__}; {todo}")


def _build(problem: Problem, values: Sequence[Any], share: bool = True) -> _Model:
    """Translate the declared problem with numeric parameter values into a :class:`_Model`;
    with ``share``, shared affine subexpressions become variables of their own
    (:func:`_translate`): ``to_cvxpy`` returns the model without them, whose objective and
    constraints a user evaluates at values of the user's variables alone."""

    cp = _cvxpy()
    env = _bind(problem, values)
    objective = problem.objective
    expr = objective.expr
    constraints = list(problem.constraints)
    roots: list[Any] = [expr]
    for con in constraints:
        roots.extend([con.lhs, con.rhs])
    variables: dict[Any, Any] = {}
    # Declare every variable first so the map follows the problem's creation order.
    for var in problem.variables():
        variables[var] = cp.Variable(var.shape, name=var.name)
    shared: list[tuple[Any, Any]] = []
    table = _translate(roots, env, variables, shared if share else None)

    rows: list[_Row] = []
    cp_cons: list[Any] = []
    for var, cvar in variables.items():
        r, c = _bound_rows(var, cvar)
        rows.extend(r)
        cp_cons.extend(c)
    for i, con in enumerate(constraints):
        diff = _cx(table[id(con.lhs)]) - _cx(table[id(con.rhs)])
        if con.sense == "<=":
            cp_cons.append(diff <= 0)
        elif con.sense == ">=":
            cp_cons.append(diff >= 0)
        elif con.sense == "==":
            cp_cons.append(diff == 0)
        else:
            raise DSLError(f"oracle: unknown constraint sense {con.sense!r} in constraint {i}")
        rows.append(_Row(_constraint_label(i, con), diff, con.sense))

    if isinstance(expr, Ratio):
        num, den = _cx(table[id(expr.num)]), _cx(table[id(expr.den)])
        obj = None
    else:
        num = den = None
        obj = _cx(table[id(expr)])
    cp_cons.extend(var == definition for var, definition in shared)
    plain = (lambda: _build(problem, values, share=False)) if shared else None
    return _Model(problem, objective.sense, obj, num, den, cp_cons, rows, variables, shared, plain)


def _cp_problem(model: _Model) -> cp.Problem:
    cp = _cvxpy()
    target = model.objective if not model.is_ratio else model.num / model.den
    sense = cp.Minimize if model.sense == "min" else cp.Maximize
    with warnings.catch_warnings():
        if model.shared:  # CVXPY counts the nodes it would expand; the shared ones are not
            warnings.filterwarnings("ignore", "Objective contains too many subexpressions")
        return cp.Problem(sense(target), list(model.constraints))


def _cvxpy_depth(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with CVXPY's RecursionError on a deeply nested model as a DSLError: CVXPY
    walks expressions recursively, and a chain built in a loop (``e = -e + x[i]``, 1,500
    steps) exceeded Python's recursion limit inside it, though lpdsl compiles and solves
    such models (a reviewing helper's probe, eighteenth pass)."""

    @functools.wraps(fn)
    def guarded(problem: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(problem, *args, **kwargs)
        except RecursionError:
            raise DSLError(
                f"{fn.__name__}: CVXPY cannot rebuild this model: its expressions are nested "
                f"deeper than Python's recursion limit ({sys.getrecursionlimit()}) allows in "
                "CVXPY's code (a chain such as e = -e + x[i] built in a loop). lpdsl compiles "
                "and solves it; to cross-check it, declare the chain's steps as variables tied "
                "by equality constraints, or raise sys.setrecursionlimit"
            ) from None

    return guarded


@_cvxpy_depth
def to_cvxpy(problem: Problem, *values: Any) -> tuple[cp.Problem, dict[Variable, cp.Variable]]:
    """Rebuild the user's model in CVXPY with numeric parameter data, bypassing lpdsl's compiler.

    Each node of the declared tree becomes the matching CVXPY expression (``index`` through the
    tree's row-major ``flat`` gather; atoms become CVXPY's own ``abs``, ``pos``, ``maximum``,
    ``max``, ``sum_largest``, ``norm1``, ...); parameters become their values, variable bounds
    become constraints. Parameter-only subexpressions are evaluated in numpy.

    A ratio objective becomes ``Minimize(num / den)`` (or ``Maximize``): the faithful model,
    which CVXPY can solve with ``solve(qcp=True)`` only when it can prove the sign of ``den``.
    :func:`solve_with_cvxpy` solves every ratio model (Dinkelbach's method).

    Args:
        problem: The declared :class:`lpdsl.Problem`.
        *values: One value per parameter in ``problem.parameters()`` order, or a single
            ``{Parameter: value}`` dict; one instance (no batch dimensions).

    Returns:
        ``(cp_problem, {lpdsl Variable: cvxpy Variable})``.

    Raises:
        DSLError: Missing, extra, mis-shaped, batched or non-finite parameter values, and
            values that make a coefficient infinite (a divisor of 0, an overflow), as
            ``standard_form`` refuses them.
    """
    _require_problem(problem, "to_cvxpy")
    model = _build(problem, values, share=False)
    return _cp_problem(model), dict(model.variables)


# --------------------------------------------------------------------------------------------
# solving the CVXPY model


@dataclass
class OracleSolution:
    """CVXPY's answer for the original model.

    Attributes:
        status: ``"optimal"``, ``"infeasible"``, ``"unbounded"``, ``"den_not_positive"``
            (a ratio objective whose denominator is not positive on the feasible set) or
            ``"failed"``.
        value: The optimal objective in the user's sense (NaN unless optimal).
        solution: ``{Variable: ndarray}`` at the optimum (empty unless optimal).
        unique: Whether the optimal point is unique over the user's variables; ``None``
            when not determined.
        den_min: For ratio objectives, the minimum of ``den`` over the feasible set.
        solves: Number of LPs CVXPY solved.
        message: What went wrong, if anything.
        band: For ratio objectives, CVXPY's ratio at its point and at that point clipped
            onto the variables' bounds, where the two differ: the optimum lies between them
            as far as CVXPY's accuracy tells (``None`` otherwise).
    """

    status: str
    value: float = float("nan")
    solution: dict[Any, np.ndarray] = field(default_factory=dict)
    unique: bool | None = None
    den_min: float | None = None
    solves: int = 0
    message: str = ""
    band: tuple[float, float] | None = None


#: Clarabel's gap and feasibility tolerances for the last Dinkelbach step (default 1e-8).
POLISH_TOL = 1e-12


def _default_solver() -> str:
    """Clarabel (interior point, accurate to ~1e-8, with infeasibility certificates).

    Not HiGHS: CVXPY 1.9 passes derived bounds on epigraph variables to solvers that accept
    variable bounds, and derives wrong ones for some products (``abs((a @ x) * k)`` gets the
    bounds ``[0, 0]``), which makes feasible models "infeasible". Clarabel takes no bounds. It
    is also a different algorithm from both of lpdsl's sides in ``check`` (Newton, or HiGHS
    with ``backend="highs"``).
    """
    installed = _cvxpy().installed_solvers()
    for name in ("CLARABEL", "HIGHS"):
        if name in installed:
            return name
    return installed[0]


def _status_of(cp_status: str) -> str:
    cp = _cvxpy()
    if cp_status in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        return OPTIMAL
    if cp_status in (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE):
        return INFEASIBLE
    if cp_status in (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE):
        return UNBOUNDED
    if cp_status == getattr(cp, "INFEASIBLE_OR_UNBOUNDED", "infeasible_or_unbounded"):
        return "infeasible_or_unbounded"
    return FAILED


class _Solver:
    """Solves CVXPY problems with one solver, counting solves and disambiguating statuses."""

    def __init__(self, constraints: list[Any], solver: str | None) -> None:
        self.constraints = constraints
        self.solver = solver or _default_solver()
        self.solves = 0
        self.error = ""  # the text of the last SolverError the solver raised
        installed = _cvxpy().installed_solvers()
        if not isinstance(self.solver, str) or self.solver.upper() not in installed:
            # run() reads CVXPY's SolverError as a failed solve: a misspelt name was reported
            # as the model failing ("CVXPY status None")
            close = difflib.get_close_matches(str(self.solver).upper(), installed, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise DSLError(
                f"CVXPY solver {self.solver!r} is not installed{guess}; the installed ones are "
                f"{', '.join(installed)}"
            )

    def run(self, prob: cp.Problem, **options: Any) -> str:
        cp = _cvxpy()
        self.solves += 1
        self.error = ""
        for var in prob.variables():
            # CVXPY 1.9 warm-starts epigraph variables from the current values and rejects
            # the solve if those break its derived bounds; a stale point must not leak in.
            var.value = None
        try:
            with warnings.catch_warnings():
                # CVXPY notes when it falls back to its SciPy canonicalisation backend, and
                # its interval arithmetic meets inf - inf on unbounded leaves: both harmless.
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                prob.solve(solver=self.solver, **options)
        except cp.error.SolverError as exc:
            self.error = f"{self.solver} raised: {exc}"
            return FAILED
        status = _status_of(prob.status)
        # "unbounded" proves only that the dual is infeasible: Clarabel says it of a model
        # that is primal infeasible too (max x, x free, next to y in [0, 1], y >= 2), so it
        # needs a feasible point, as the solver's "infeasible or unbounded" does
        if status in ("infeasible_or_unbounded", UNBOUNDED):
            status = UNBOUNDED if self.feasible() else INFEASIBLE
        return status

    def polish(self, prob: cp.Problem) -> bool:
        """Solve ``prob`` again at ``POLISH_TOL`` where the solver is Clarabel (whose
        default accuracy is ~1e-8); whether that solve was optimal (else ``prob`` holds the
        solver's default answer again)."""
        if self.solver.upper() != "CLARABEL":
            return False
        tight = {"tol_gap_abs": POLISH_TOL, "tol_gap_rel": POLISH_TOL, "tol_feas": POLISH_TOL}
        cp = _cvxpy()
        kept = {var: var.value for var in prob.variables()}
        if self.run(prob, **tight) == OPTIMAL and prob.status == cp.OPTIMAL:
            return True
        # the default answer back as it was: solved again, CVXPY reused the failed solver
        # object and failed too, and the values read None (a raw numpy error in check: a
        # reviewing helper's probe)
        for var, value in kept.items():
            var.value = value
        return False

    def feasible(self) -> bool:
        cp = _cvxpy()
        return self.run(cp.Problem(cp.Minimize(0), self.constraints)) == OPTIMAL


def _values_of(model: _Model) -> dict[Any, np.ndarray]:
    return {
        v: np.asarray(c.value, dtype=np.float64).reshape(v.shape)
        for v, c in model.variables.items()
    }


def _point_text(point: dict[Any, np.ndarray], width: int = 160) -> str:
    """``y = 0, x = [0, 1, 0.5]``: a point of the model for a message, cut to ``width``.

    Entries within ``DEN_TOL`` (relative to the point's largest) of 0 read 0: an interior-point
    solver's 1.8e-9 for a bound at 0."""
    scale = 1.0 + max((float(np.abs(v).max(initial=0.0)) for v in point.values()), default=0.0)
    parts = []
    for v, value in point.items():
        value = np.where(np.abs(value) <= DEN_TOL * scale, 0.0, value)
        text = (
            f"{float(value):.3g}"
            if value.ndim == 0
            else np.array2string(
                value, precision=3, separator=", ", threshold=6, edgeitems=2, max_line_width=10**6
            )
        )
        parts.append(f"{v.name} = {text}")
    out = ", ".join(parts)
    return out if len(out) <= width else out[: width - 1] + "…"


def _scalar(value: Any) -> float:
    if not _is_num(value):
        value = value.value
    return float(np.asarray(value, dtype=np.float64).reshape(()))


def _solve_linear(model: _Model, run: _Solver) -> OracleSolution:
    prob = _cp_problem(model)
    status = run.run(prob)
    if status != OPTIMAL:
        message = "" if status != FAILED else run.error or f"CVXPY status {prob.status}"
        return OracleSolution(status, solves=run.solves, message=message)
    return OracleSolution(OPTIMAL, _scalar(model.objective), _values_of(model), solves=run.solves)


def _solve_ratio(
    model: _Model, run: _Solver, max_iter: int = 60, start: float | None = None
) -> OracleSolution:
    """Minimise ``s·num / den`` by Dinkelbach's method, with a bisection fallback.

    Why not CVXPY's DQCP mode: it needs CVXPY to *prove* ``den >= 0`` from signs alone, which
    fails for most affine denominators. Why not Charnes–Cooper: that is the compiler's route,
    and the oracle must not share it. Dinkelbach solves LPs ``min s·num - t·den`` with
    ``t`` updated to the ratio at the minimiser; for LPs it stops at an exact vertex after a few
    steps. The first LP, ``min den``, also verifies the precondition ``den > 0``.

    ``start``: the model's objective at a feasible point (lpdsl's, from :func:`check`), where
    that is better than the ratio at ``min den``'s point, starts the iteration: with a bound
    of 1e12 far from the optimum, the steps from ``min den``'s point tie along it, Clarabel
    stops mid-face, and the ratio read there (1.000000004 for 4/3) or a SolverError ended the
    oracle (a reviewing helper's probe). A step at a ratio ``t`` that a point attains proves
    it optimal where it finds ``min s·num - t·den = 0`` — the oracle's own verdict.
    """
    cp = _cvxpy()
    sign = 1.0 if model.sense == "min" else -1.0
    num, den = sign * model.num, model.den

    first = cp.Problem(cp.Minimize(den), model.constraints)
    status = run.run(first)
    if status == INFEASIBLE:
        return OracleSolution(INFEASIBLE, solves=run.solves)
    if status == UNBOUNDED:
        return OracleSolution(
            DEN_NOT_POSITIVE,
            solves=run.solves,
            message="den is unbounded below on the feasible set",
        )
    if status != OPTIMAL:
        return OracleSolution(
            FAILED, solves=run.solves, message=f"min den: {first.status or run.error}"
        )
    den_min = _scalar(den)
    if den_min <= DEN_TOL:
        return OracleSolution(
            DEN_NOT_POSITIVE,
            den_min=den_min,
            solves=run.solves,
            message=f"min of den over the feasible set is {den_min:.3g} <= 0 (0 up to the "
            f"solver's accuracy, DEN_TOL = {DEN_TOL:g}), reached at the feasible point "
            f"{_point_text(_values_of(model))} (entries within DEN_TOL of 0 shown as 0)",
        )

    t = cp.Parameter(name="ratio")
    best = (_scalar(num) / _scalar(den), _values_of(model))  # the best ratio seen, its point
    t.value = best[0] if start is None else min(best[0], sign * start)
    sub = cp.Problem(cp.Minimize(num - t * den), model.constraints)
    for _ in range(max_iter):
        status = run.run(sub)
        if status == UNBOUNDED:
            return _bisect_ratio(model, run, num, den, float(t.value), den_min)
        if status != OPTIMAL:
            return OracleSolution(
                FAILED,
                den_min=den_min,
                solves=run.solves,
                message=f"Dinkelbach step: {sub.status or run.error}",
            )
        gap = _scalar(sub.objective.expr)
        new_t = _scalar(num) / _scalar(den)
        current = float(t.value)
        if new_t < best[0]:
            best = (new_t, _values_of(model))
        # Stop when the step certifies optimality (F(t) = 0 up to solver accuracy) or no
        # longer improves the ratio; the returned point is the last minimiser, ratio new_t.
        if gap >= -1e-10 * (1.0 + abs(current) * _scalar(den)) or (
            current - new_t <= 1e-12 * (1.0 + abs(current))
        ):
            break
        t.value = new_t
    else:
        return OracleSolution(
            FAILED,
            den_min=den_min,
            solves=run.solves,
            message=f"Dinkelbach did not converge in {max_iter} steps",
        )
    # The ratio at the last minimiser carries the solver's error divided by den: Clarabel's
    # ~1e-8 made max (a.x + 1) / (x0 - x1 + 1e-5) 1.8e-6 off, and check failed a right
    # answer (11 of 20 random models with den ~1e-4: a reviewing helper); polished, 4e-10.
    if run.polish(sub):
        new_t = _scalar(num) / _scalar(den)
    if new_t > best[0]:
        # an inaccurate step (Clarabel's "optimal_inaccurate" put F(t) at +8e8, which an
        # exact step cannot) ended at a worse point than one already found: that one stands
        # (0.78 was returned for 0.099, and check failed a right answer: a reviewing helper)
        new_t = best[0]
        for var, value in best[1].items():
            model.variables[var].value = value.reshape(model.variables[var].shape)
        model.fill_shared()
    if _scalar(den) <= DEN_TOL:  # the iterates chased den -> 0: min den was misjudged
        return OracleSolution(
            DEN_NOT_POSITIVE,
            den_min=_scalar(den),
            solves=run.solves,
            message=f"Dinkelbach's iterates drove den to {_scalar(den):.3g}: den reaches 0 "
            "on the feasible set and the ratio is unbounded",
        )
    return OracleSolution(
        OPTIMAL, sign * new_t, _values_of(model), den_min=den_min, solves=run.solves
    )


def _bisect_ratio(
    model: _Model, run: _Solver, num: Any, den: Any, upper: float, den_min: float
) -> OracleSolution:
    """Bisection on ``{s·num - t·den <= 0}`` feasibility, for unbounded feasible sets.

    ``upper`` is attained (a feasible ratio); a lower bracket is found by doubling. If no
    lower bracket exists after 60 doublings the ratio is unbounded below.
    """
    cp = _cvxpy()
    sign = 1.0 if model.sense == "min" else -1.0
    t = cp.Parameter(name="level")
    w = cp.Parameter(name="weight", nonneg=True)
    # num - t den <= 0 divided by 1 + |t|: at levels ~4e9 Clarabel called the plainly
    # feasible {y >= 4.3e9 (1 + u)} infeasible, and the bisection converged to a made-up
    # finite value of an unbounded ratio (a reviewing helper's probe)
    feas = cp.Problem(cp.Minimize(0), [*model.constraints, w * num - (w * t) * den <= 0])

    def feasible(level: float) -> bool:
        t.value, w.value = level, 1.0 / (1.0 + abs(level))
        return run.run(feas) == OPTIMAL

    step = max(1.0, abs(upper))
    lower = upper - step
    for _ in range(60):
        if not feasible(lower):
            break
        step *= 2.0
        lower = upper - step
    else:
        return OracleSolution(UNBOUNDED, den_min=den_min, solves=run.solves)
    if step > BISECT_FAR * max(1.0, abs(upper)):
        # "infeasible" that far down is as likely the solver's rounding as a bound: an
        # unbounded ratio (min -y / (1 + u), u, y >= 0) was bracketed at -4.3e9 and bisected
        # to a made-up optimum (a reviewing helper's probe)
        return OracleSolution(
            FAILED,
            den_min=den_min,
            solves=run.solves,
            message=f"the ratio falls below {sign * lower:.3g} on the feasible set and the "
            "solver's answers that far out are not conclusive: unbounded, or an optimum "
            "beyond its accuracy",
        )
    while upper - lower > 1e-10 * (1.0 + abs(upper)):
        mid = 0.5 * (lower + upper)
        if feasible(mid):
            upper = mid
        else:
            lower = mid
    feasible(upper)
    return OracleSolution(
        OPTIMAL, sign * upper, _values_of(model), den_min=den_min, solves=run.solves
    )


def _unique(model: _Model, run: _Solver, result: OracleSolution, seed: int = 0) -> bool | None:
    """Whether the optimal face is a single point (over the user's variables).

    Minimises and maximises a random linear functional over the optimal face (objective fixed
    to its optimum up to a 1e-9 relative slack): a face of positive dimension has a positive
    width in a random direction with probability one.
    """
    cp = _cvxpy()
    if not any(c.size for c in model.variables.values()):  # no variable entry: one point
        return True
    flat = cp.hstack([_vec(c) for c in model.variables.values() if c.size])
    scale = 1e-9 * (1.0 + abs(result.value))
    if model.is_ratio:
        sign = 1.0 if model.sense == "min" else -1.0
        face = [sign * model.num - (sign * result.value) * model.den <= scale]
    elif model.sense == "min":
        face = [model.objective <= result.value + scale]
    else:
        face = [model.objective >= result.value - scale]
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(flat.shape[0])
    ends = []
    for sgn in (1.0, -1.0):
        prob = cp.Problem(cp.Minimize(sgn * direction @ flat), [*model.constraints, *face])
        if run.run(prob) != OPTIMAL:
            return None
        ends.append(np.asarray(flat.value, dtype=np.float64))
    width = float(np.max(np.abs(ends[0] - ends[1])))
    return width <= 1e-6 * (1.0 + float(np.max(np.abs(ends[0]))))


def _solve_model(
    model: _Model, solver: str | None = None, uniqueness: bool = False, start: float | None = None
) -> OracleSolution:
    run = _Solver(model.constraints, solver)
    result = _solve_ratio(model, run, start=start) if model.is_ratio else _solve_linear(model, run)
    if uniqueness and result.status == OPTIMAL:
        solution = result.solution
        result.unique = _unique(model, run, result)
        if result.unique is None and model.plain is not None:
            # a probe of the model with its shared subexpressions as variables can fail where
            # the plain model's does not (Clarabel: 9 of 90 ratio models against 5; a
            # verifying helper, twentieth pass)
            plain = model.plain()
            result.unique = _unique(plain, _Solver(plain.constraints, solver), result)
        # The probes overwrite the CVXPY variables; restore the reported optimum.
        for v, c in model.variables.items():
            c.value = solution[v]
        model.fill_shared()
    result.solves = run.solves
    return result


@_cvxpy_depth
def solve_with_cvxpy(
    problem: Problem, *values: Any, solver: str | None = None, uniqueness: bool = False
) -> OracleSolution:
    """Solve the original model (as rebuilt by :func:`to_cvxpy`) with CVXPY.

    Affine and piecewise-linear objectives are one CVXPY solve. Ratio objectives are solved
    by Dinkelbach's method (bisection if the feasible set is unbounded), after checking that
    ``den > 0`` on the feasible set.

    Args:
        problem: The declared problem.
        *values: Parameter values, as for :func:`to_cvxpy`.
        solver: A CVXPY solver name; default Clarabel (see :func:`_default_solver`).
        uniqueness: Also decide whether the optimal point is unique (two more LPs).

    Returns:
        An :class:`OracleSolution`.
    """
    _require_problem(problem, "solve_with_cvxpy")
    return _solve_model(_build(problem, values), solver, uniqueness)


# --------------------------------------------------------------------------------------------
# evaluating a point in the original model


def _set_point(model: _Model, point: Mapping[Any, Any]) -> None:
    for var, cvar in model.variables.items():
        if var not in point:
            raise DSLError(
                f"oracle: no value for variable {var.name!r} (shape {var.shape}) in the point"
            )
        value = _numeric(point[var])
        if value.size != int(np.prod(var.shape, dtype=np.int64)):
            raise DSLError(
                f"oracle: the value for variable {var.name!r} has shape {value.shape}; the "
                f"variable has shape {var.shape}"
            )
        cvar.value = value.reshape(var.shape)
    model.fill_shared()


def _violation(row: _Row) -> float:
    value = np.asarray(row.diff if _is_num(row.diff) else row.diff.value, dtype=np.float64)
    if row.sense == "<=":
        viol = np.maximum(value, 0.0)
    elif row.sense == ">=":
        viol = np.maximum(-value, 0.0)
    else:
        viol = np.abs(value)
    return float(viol.max()) if viol.size else 0.0


def _evaluate(model: _Model, point: Mapping[Any, Any]) -> tuple[float, str, float, float | None]:
    """(max violation, worst row label, objective, den) of ``point`` in the original model."""
    _set_point(model, point)
    worst, label = 0.0, ""
    for row in model.rows:
        v = _violation(row)
        if not np.isfinite(v) or v > worst:
            worst, label = v, row.label
    if model.is_ratio:
        den = _scalar(model.den)
        return worst, label, _scalar(model.num) / den, den
    return worst, label, _scalar(model.objective), None


# --------------------------------------------------------------------------------------------
# check


@dataclass
class CheckReport:
    """lpdsl's answer next to CVXPY's for one problem instance.

    ``ok`` is true when the statuses agree and, if both are optimal: the objective values agree
    (``|a - b| <= atol + rtol * max(|a|, |b|)``), lpdsl's recovered point satisfies the
    original model within ``feas_tol`` (scaled by ``1 + max |x|``), the objective evaluated at
    that point agrees with both, and — where CVXPY's optimal point is unique — the points agree
    within ``sol_tol`` (scaled likewise).
    """

    backend: str
    lpdsl_status: str
    cvxpy_status: str
    lpdsl_value: float = float("nan")
    lpdsl_value_at_point: float = float("nan")
    cvxpy_value: float = float("nan")
    max_violation: float = float("nan")
    worst_constraint: str = ""
    solution_unique: bool | None = None
    solution_diff: float | None = None
    den_at_point: float | None = None
    cvxpy_den_min: float | None = None
    rtol: float = 1e-6
    atol: float = 1e-6
    feas_tol: float = 1e-6
    sol_tol: float = 1e-5
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing in :attr:`failures` (see the class docstring for the criteria)."""
        return not self.failures

    @property
    def value_diff(self) -> float:
        """``lpdsl_value - cvxpy_value`` (NaN unless both are optimal)."""
        return self.lpdsl_value - self.cvxpy_value

    def raise_if_failed(self) -> None:
        """Raise :class:`lpdsl.SolverError` with the full report if the check failed."""
        if not self.ok:
            raise SolverError(f"lpdsl disagrees with the CVXPY oracle:\n{self}")

    def __str__(self) -> str:
        def num(x: float | None) -> str:
            return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.10g}"

        unique = {True: "yes", False: "no (not compared)", None: "not known (not compared)"}
        lines = [
            f"{'':24}{'lpdsl (' + self.backend + ')':>26}{'CVXPY':>26}",
            f"{'status':24}{self.lpdsl_status:>26}{self.cvxpy_status:>26}",
            f"{'objective':24}{num(self.lpdsl_value):>26}{num(self.cvxpy_value):>26}",
            f"{'objective at point':24}{num(self.lpdsl_value_at_point):>26}{'':>26}",
            f"{'objective difference':24}{num(self.value_diff):>26}",
            f"{'max violation':24}{num(self.max_violation):>26}  {self.worst_constraint}",
        ]
        if self.den_at_point is not None or self.cvxpy_den_min is not None:
            lines.append(
                f"{'den (point / min)':24}{num(self.den_at_point):>26}{num(self.cvxpy_den_min):>26}"
            )
        lines.append(f"{'unique optimum':24}{'':>26}{unique[self.solution_unique]:>26}")
        lines.append(f"{'solution difference':24}{num(self.solution_diff):>26}")
        lines.append(
            f"tolerances: rtol={self.rtol:g} atol={self.atol:g} feas_tol={self.feas_tol:g} "
            f"sol_tol={self.sol_tol:g}"
        )
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append("OK" if self.ok else "FAILED")
        lines.extend(f"  - {f}" for f in self.failures)
        return "\n".join(lines)


def _linprog(A: Any, b: np.ndarray, c: np.ndarray) -> tuple[str, np.ndarray | None]:
    """Solve ``min c·x s.t. A x <= b``, x free, with scipy's HiGHS."""
    from scipy.optimize import linprog

    res = linprog(c, A_ub=A, b_ub=b, bounds=(None, None), method="highs")
    if res.status == 0:
        return OPTIMAL, np.asarray(res.x, dtype=np.float64)
    if res.status in (2, 3):  # HiGHS may only know "infeasible or unbounded": ask again
        feas = linprog(np.zeros_like(c), A_ub=A, b_ub=b, bounds=(None, None), method="highs")
        return (UNBOUNDED if feas.status == 0 else INFEASIBLE), None
    return FAILED, None


def _point_scale(point: Mapping[Any, Any]) -> float:
    """``1 + max |entry|`` of a point: the scale of ``check``'s feasibility tolerance."""
    return 1.0 + max(
        (float(np.max(np.abs(_numeric(v)), initial=0.0)) for v in point.values()), default=0.0
    )


def _from_point(
    model: _Model,
    oracle: OracleSolution,
    point: Mapping[Any, Any],
    solver: str | None,
    uniqueness: bool,
    feas_tol: float,
) -> OracleSolution:
    """The ratio oracle again, Dinkelbach started at the objective of ``point`` (lpdsl's),
    where ``point`` is feasible and the first run failed or ended at a worse ratio (see
    :func:`_solve_ratio`'s ``start``); else, or where the new run is not OPTIMAL, ``oracle``.
    The new run's note says how the first ended."""
    viol, _, value, _ = _evaluate(model, point)
    if viol > feas_tol * _point_scale(point):
        return oracle
    if oracle.status == OPTIMAL:
        worse = oracle.value - value if model.sense == "min" else value - oracle.value
        if worse < -1e-12 * (1.0 + abs(value)):
            # CVXPY's point beats lpdsl's feasible one: by its own infeasibility, where a
            # bound broken by 1.4e-9 times a ratio's slope of 1e6 read 8.6e-4 better, and
            # check failed a right answer (a reviewing helper's fuzz). Its ratio is taken at
            # the point clipped to the variables' bounds, where that point is feasible.
            clipped = _clipped(oracle.solution)
            cviol, _, cvalue, _ = _evaluate(model, clipped)
            if cviol <= feas_tol * _point_scale(clipped) and cvalue != oracle.value:
                oracle.message = (
                    f"CVXPY's point, {oracle.value:.10g}, breaks a variable's bound within "
                    f"its tolerance; clipped onto the bounds it reads {cvalue:.10g}"
                )
                oracle.band = (min(cvalue, oracle.value), max(cvalue, oracle.value))
                oracle.value, oracle.solution = cvalue, clipped
                return oracle
        if worse <= 1e-12 * (1.0 + abs(value)):
            return oracle
    again = _solve_model(model, solver, uniqueness, start=value)
    if again.status != OPTIMAL:
        return oracle
    first = f"failed ({oracle.message})" if oracle.status == FAILED else f"at {oracle.value:.10g}"
    again.message = (
        f"Dinkelbach started at the ratio of lpdsl's (feasible) point, {value:.10g}; started "
        f"at min den's point it ended {first}"
    )
    return again


def _clipped(solution: Mapping[Any, Any]) -> dict[Any, np.ndarray]:
    """``solution`` with each variable's values clipped to its declared bounds."""
    out = {}
    for var, value in solution.items():
        lb, ub = var.attrs.get("lb"), var.attrs.get("ub")
        low = -np.inf if lb is None else lb
        high = np.inf if ub is None else ub
        out[var] = np.clip(np.asarray(value, dtype=np.float64), low, high)
    return out


#: ``check``'s tolerances, each a finite number ``>= 0``
CHECK_TOLERANCES = ("rtol", "atol", "feas_tol", "sol_tol")


def _check_arguments(given: Mapping[str, Any], solve_options: dict[str, Any]) -> None:
    """Refuse bad tolerances and unknown solver options of :func:`check` up front: ``rtol=-1``
    failed a right answer, ``foo=1`` raised solve()'s raw TypeError (a helper's probe)."""
    from lpdsl.layers import SOLVE_OPTIONS, check_options

    for name in CHECK_TOLERANCES:
        v = given[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise DSLError(f"check: {name} must be a finite number >= 0, got {v!r}")
    own = ("backend", "x", *CHECK_TOLERANCES, "cvxpy_solver", "uniqueness")
    check_options(solve_options, SOLVE_OPTIONS - {"warm_start"}, "check", own)


def _as_point(x: Any) -> Any:
    """``check``'s ``x`` as a float64 tensor, else DSLError (a meta ``x`` raised torch's
    "Tensor.item() cannot be called on meta tensors")."""
    import torch

    point = real_tensor(x, "x")
    check_readable(point, "check: x")
    return point.detach().to(torch.float64)


def _solve_lpdsl(
    A: Any, b: Any, c: Any, backend: str, options: dict[str, Any], ratio: bool
) -> tuple[str, str, Any]:
    """lpdsl's side: (backend used, status, x or None); a ``ratio`` model's LP is solved as
    ``LPLayer`` solves it (``solve_ratio_lp``, docs/compiler.md)."""
    import torch

    if backend == "newton":
        sol = (solve_ratio_lp if ratio else solve)(A, b, c, **options)
        code = Status(int(sol.status))
        status = {
            Status.OPTIMAL: OPTIMAL,
            Status.INFEASIBLE: INFEASIBLE,
            Status.UNBOUNDED: UNBOUNDED,
        }.get(code, FAILED)
        return "newton", status, sol.x.detach()
    if backend != "highs":
        raise DSLError(f"check: unknown backend {backend!r}; use 'newton' or 'highs'")
    if options:
        raise DSLError(
            f"check: solve options {sorted(options)} apply to lpdsl.solve only, not to "
            "backend='highs'"
        )
    b_np, c_np = (t.detach().cpu().double().numpy() for t in (b, c))
    if isinstance(A, SparseMatrix):  # HiGHS takes scipy's sparse matrices as they are
        from scipy.sparse import csr_matrix

        p = A.pattern
        rows, cols, vals = (t.detach().cpu().numpy() for t in (p.rows, p.cols, A.values))
        A_np = csr_matrix((vals.astype(np.float64), (rows, cols)), shape=p.shape)
    else:
        A_np = A.detach().cpu().double().numpy()
    status, x = _linprog(A_np, b_np, c_np)
    return "highs", status, None if x is None else torch.as_tensor(x, dtype=torch.float64)


@_cvxpy_depth
def check(
    problem: Problem,
    *values: Any,
    backend: str = "newton",
    x: Any = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    feas_tol: float = 1e-6,
    sol_tol: float = 1e-5,
    cvxpy_solver: str | None = None,
    uniqueness: bool = True,
    **solve_options: Any,
) -> CheckReport:
    """Solve one instance lpdsl's way and CVXPY's way; report the two side by side.

    lpdsl's way: ``problem.compile().standard_form(*values, dtype=torch.float64)``, solved by
    ``lpdsl.solve`` (backend ``"newton"``, or scipy's HiGHS with ``"highs"``), then
    ``recover`` / ``value``. In float64 whatever the values' dtype: a layer given float16 or
    bfloat16 values rounds the coefficients to that dtype, which this does not check (pass
    the layer's point as ``x`` for that).
    CVXPY's way: :func:`solve_with_cvxpy` on :func:`to_cvxpy`'s model. The recovered point
    is evaluated in the original CVXPY expressions (atoms as atoms), so a wrong epigraph or
    transform shows up as a violation or an objective gap.

    Args:
        problem: The declared problem.
        *values: One unbatched instance of the parameter values (positional or one dict).
            For a batch, call once per item.
        backend: ``"newton"`` (lpdsl's solver) or ``"highs"`` (scipy's simplex).
        x: A standard-form point to audit instead of solving lpdsl's side (a layer's:
            ``layer.last_solution.x[i]``, not its outputs, which are the user's variables);
            it goes through ``recover``/``value`` like a solver's answer.
        rtol: Relative tolerance on objective values.
        atol: Absolute tolerance on objective values.
        feas_tol: Tolerance on the recovered point's constraint violation.
        sol_tol: Tolerance on the distance to CVXPY's point when that point is unique.
        cvxpy_solver: CVXPY solver name (default Clarabel).
        uniqueness: Decide uniqueness of CVXPY's optimum (two extra LPs) so that solutions can
            be compared.
        **solve_options: Passed to ``lpdsl.solve`` (``eps``, ``rho``, ``max_iter``, ``tol``).

    Returns:
        A :class:`CheckReport`; ``report.ok``, ``str(report)``, ``report.raise_if_failed()``.

    Raises:
        DSLError: Bad parameter values (the same messages as ``standard_form``), batched
            values, or an unknown backend.
    """
    import torch

    _require_problem(problem, "check")
    _check_arguments(locals(), solve_options)
    model = _build(problem, values)  # validates values first: one instance, right shapes
    compiled = problem.compile()
    # an almost empty A stays sparse (as LPLayer's "auto"): the dense standard form of the AUC
    # model over 1,000 samples asked for 931 GiB (a helper's probe)
    layout = auto_layout(compiled.pattern)
    A, b, c = compiled.standard_form(*values, dtype=torch.float64, layout=layout)
    A = SparseMatrix(A.pattern, A.values.detach()) if layout == "sparse" else A.detach()
    b, c = b.detach(), c.detach()
    if x is None:
        used, status, point = _solve_lpdsl(A, b, c, backend, dict(solve_options), compiled.is_ratio)
    else:
        used, status = "given x", OPTIMAL
        point = _as_point(x)
        if tuple(point.shape) != tuple(c.shape):
            raise DSLError(
                f"check: x has shape {tuple(point.shape)} but the standard form has "
                f"{c.shape[-1]} columns; pass one standard-form point of shape {tuple(c.shape)} "
                "(a layer's is layer.last_solution.x[i]; its outputs are the user's variables)"
            )
    # judged in the precision the LP was solved in (float64 unless compute_dtype says
    # otherwise; HiGHS: float64): with float32 values a float32 x capped |x| at 8,389 and a
    # correct optimum at x = 9000 failed as "t = 0" (a helper's probe)
    precision = solve_options.get("compute_dtype") or torch.float64
    recovered = None  # lpdsl's point in the user's variables, where it has one
    if status == OPTIMAL and point is not None:
        recovered = compiled.recover(point, precision=precision)
    finite = recovered is not None and all(
        bool(torch.isfinite(v).all()) for v in recovered.values()
    )
    oracle = _solve_model(model, cvxpy_solver, uniqueness)
    if model.is_ratio and finite and oracle.status in (OPTIMAL, FAILED):
        oracle = _from_point(model, oracle, recovered, cvxpy_solver, uniqueness, feas_tol)
    report = CheckReport(
        used,
        status,
        oracle.status,
        cvxpy_value=oracle.value,
        solution_unique=oracle.unique,
        cvxpy_den_min=oracle.den_min,
        rtol=rtol,
        atol=atol,
        feas_tol=feas_tol,
        sol_tol=sol_tol,
    )
    if oracle.message:
        report.notes.append(f"CVXPY: {oracle.message}")
    if oracle.status == DEN_NOT_POSITIVE:
        # SPEC §1: den > 0 on the whole feasible set. LPLayer's own denominator check lets
        # through a den that reaches 0 only on the boundary (docs/compiler.md), and solves
        # such a model where the optimum lies elsewhere; the oracle keeps SPEC's contract.
        solved = ""
        if recovered is not None:
            if finite:
                report.den_at_point = _evaluate(model, recovered)[3]
            at = "" if report.den_at_point is None else f" (den = {report.den_at_point:.4g})"
            # (only where den's minimum is about 0: with den = -1 somewhere LPLayer refuses
            # the model, and the sentence said it solved it, a reviewing helper)
            near_zero = oracle.den_min is None or oracle.den_min >= -DEN_TOL
            solved = (
                f" This holds even though lpdsl's side returned an optimum{at}: where den "
                "reaches 0 only at a boundary point away from the optimum, LPLayer solves the "
                "model (docs/compiler.md), but the model lies outside the contract check "
                "verifies; keep den > 0 on the feasible set (e.g. a bound that keeps den >= "
                "some margin)"
                if near_zero
                else f" lpdsl's side (Charnes–Cooper's LP, which covers den > 0 only) returned a "
                f"point{at}; LPLayer's denominator check refuses such a model"
            )
        report.failures.append(
            "the model violates SPEC §1's precondition den > 0 on the feasible set: "
            f"{oracle.message}.{solved}"
        )
        return report
    if compiled.is_ratio and recovered is not None and not finite:
        # Charnes-Cooper's LP keeps points with t = 0 where the model's own rows have none but
        # a variable is unbounded along a direction where den grows (a reviewing helper's
        # fuzz: min (y + 1) / (x + 1), x >= 0, 0 <= y <= 1, y >= 2): its optimum is then no
        # evidence of a feasible model, and the rows at t = 1 decide (docs/compiler.md)
        A_x, b_x, q, _ = denominator_lp(A, b)
        if int(solve(A_x, b_x, q, **solve_options).status) == Status.INFEASIBLE:
            status = report.lpdsl_status = INFEASIBLE
            report.notes.append(
                "lpdsl: the Charnes-Cooper LP was solved at t = 0, and the model's own rows "
                "(t = 1) are INFEASIBLE: no point meets the constraints"
            )
    if oracle.status == FAILED:  # no verdict on lpdsl's side either way
        report.failures.append(
            f"inconclusive: CVXPY could not solve the model (see its note); lpdsl: {status}"
        )
        return report
    if status != oracle.status:
        report.failures.append(f"status differs: lpdsl {status}, CVXPY {oracle.status}")
    if status != OPTIMAL or point is None:
        return report

    if not finite and not compiled.is_ratio:  # a given x, or a solver's, holding NaN/inf
        bad = [v.name for v, value in recovered.items() if not bool(torch.isfinite(value).all())]
        report.failures.append(
            f"lpdsl's point is not finite: {', '.join(bad)} hold(s) NaN or inf entries"
            + (" in the x given" if x is not None else "")
        )
        return report
    if not finite:
        # docs/compiler.md: a ratio whose optimum is only approached as x -> inf has t = 0;
        # a t > 0 below recover's cap is a finite optimum too far out for the solve's dtype
        # (the message blamed unbounded variables where all were bounded: a reviewing helper)
        t = float(point.reshape(-1)[-1])
        cap = recover_cap(precision)
        reason = (
            f"its t = {t:.3g} is 0 to recover's test (|x| = |y| / t is capped at {cap:.2g} for "
            f"a {str(precision).removeprefix('torch.')} solve): the ratio's optimum is "
            "approached only as the variables grow without bound (t = 0), or lies beyond that "
            "cap; bound the variables, or rescale them"
            + (" (or compute in float64)" if precision != torch.float64 else "")
        )
        report.failures.append(
            f"lpdsl's optimum of the Charnes-Cooper LP gives no finite x, so recover() gives "
            f"NaN: {reason}"
        )
        return report
    report.lpdsl_value = float(compiled.value(point, *values, precision=precision))
    viol, label, at_point, den = _evaluate(model, recovered)
    scale = _point_scale(recovered)
    report.max_violation, report.worst_constraint = viol, label
    report.lpdsl_value_at_point, report.den_at_point = at_point, den

    def close(a: float, b: float) -> bool:
        return abs(a - b) <= atol + rtol * max(abs(a), abs(b))

    def apart(a: float, b: float) -> str:
        # (at 10 digits the two values of a failure could read alike: a reviewing helper)
        allowed = atol + rtol * max(abs(a), abs(b))
        return f" (apart by {abs(a - b):.3g} > atol + rtol max|.| = {allowed:.3g})"

    if viol > feas_tol * scale:
        report.failures.append(
            f"lpdsl's point violates {label} by {viol:.3g} (> feas_tol {feas_tol:g} x {scale:.3g})"
        )
    if not close(report.lpdsl_value, at_point):
        report.failures.append(
            f"compiled.value(x) = {report.lpdsl_value:.10g} but the original objective at the "
            f"recovered point is {at_point:.10g}{apart(report.lpdsl_value, at_point)}"
        )
    if oracle.status != OPTIMAL:
        return report
    mine, band = report.lpdsl_value, oracle.band
    undecided = (
        band is not None
        and not close(band[0], band[1])
        and (band[0] <= mine <= band[1] or close(mine, band[0]) or close(mine, band[1]))
    )
    if undecided:
        # CVXPY's point breaks a bound within its tolerance, and clipped onto the bounds it
        # reads worse by more than check's tolerance: a ratio whose den is ~1e-4 at the
        # optimum turns a bound's 1e-9 into 1e-6 of the ratio. lpdsl's exact answer failed as
        # "differs" (a fuzzing helper), and a point 10 tolerances off passed beside the
        # clipped one; taken as agreement, every point between passed (verifying helpers)
        report.failures.append(
            f"inconclusive: lpdsl's feasible point, {mine:.10g}, lies within the band "
            f"between CVXPY's point, {band[1] if oracle.value == band[0] else band[0]:.10g} "
            f"(outside a bound within its tolerance), and that point clipped onto the "
            f"bounds, {oracle.value:.10g}: CVXPY's accuracy does not decide it"
        )
    elif not close(mine, oracle.value):
        report.failures.append(
            f"objective differs: lpdsl {report.lpdsl_value:.10g}, CVXPY {oracle.value:.10g}"
            + apart(mine, oracle.value)
        )
    if oracle.unique:
        diff = (
            max(
                float(np.max(np.abs(_numeric(recovered[v]).reshape(v.shape) - val)))
                if val.size
                else 0.0
                for v, val in oracle.solution.items()
            )
            if oracle.solution
            else 0.0
        )
        report.solution_diff = diff
        if diff > sol_tol * scale:
            report.failures.append(
                f"solution differs from CVXPY's unique optimum by {diff:.3g} (max abs entry)"
            )
    return report
