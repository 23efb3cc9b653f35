"""The batched generalized-Newton exterior-penalty LP backend (SPEC §3; paper §3, App. B).

For ``min c.x s.t. A x <= b`` (x free) Mangasarian (2004) minimises the exterior penalty

    g(y) = 0.5 * ||relu(A y - b)||^2 + eps * c.y                                (paper eq. 6)

whose minimiser, for every ``eps`` below a problem-dependent threshold, identifies an optimal
active set. The steps here (details and references in ``docs/solver.md``):

1. Scaling: columns far smaller than the others up by powers of two (``x = S x'``, exact;
   only where needed, and kept only where its verdicts hold in the LP's own units), rows of
   ``A``, ``b`` to unit norm (``D``), ``c`` to unit norm
   (``gamma``); the row-scaled ``D A`` is formed once per solve (one copy of ``A``, or of its
   nonzeros): :mod:`lpdsl.solvers.scaling`.
2. Continuation: ``eps = 0.1, 0.01, ...`` (in float64, divided by 100 after a stage of one
   step and its confirmation; a separable ``A`` starts at ``1e-7``, ``1e-3`` in float32) down
   to ``1e-11`` (times the LP's length scale ``max |D b|`` where that is below 1) and finally
   ``0`` (a pure feasibility stage), each stage warm-started from the
   last; an item stops as soon as it holds a certificate.
3. A stage is generalized Newton, ``d = -(A^T D diag(r > 0) D A + rho I)^{-1} grad g``
   (paper eq. 7; a stage's first step weights ``r >= 0``), with the exact line search of
   :mod:`lpdsl.solvers.linesearch`, until the violated-row pattern repeats (the quadratic
   piece is found). The linear algebra follows A's structure (:mod:`lpdsl.solvers.linalg`).
4. Recovery and certificate: the active set ``S = {r > 0}`` gives ``x`` and a dual by
   :func:`lpdsl.diff.active.recover`; OPTIMAL requires ``x`` feasible, a nonnegative dual
   that is stationary (``A^T v = -c``) and a zero duality gap, all within ``tol``. It is
   attempted when ``S`` has as many rows as at the previous stage or at most ``n`` rows (and
   on the last stage), reusing the last Newton factorisation where ``S`` is its pattern;
   rows the recovered point violates by O(eps) complete ``S`` on degenerate optima:
   :mod:`lpdsl.solvers.certificate`.
5. Statuses from evidence only: INFEASIBLE from a Farkas ray, UNBOUNDED from a recession
   direction plus a feasible point (:mod:`lpdsl.solvers.evidence`), otherwise MAX_ITER.

All items of a batch are solved together; finished items leave the working set.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch.autograd import forward_ad

from lpdsl.diff.active import (
    RECOVERY_SHIFT,
    envelope_value,
    null_part,
    refine_live,
)
from lpdsl.diff.unroll import unroll
from lpdsl.errors import DataScaleError, DSLError
from lpdsl.solvers.certificate import (
    ROUNDING_ULPS,
    certify,
    certify_stage,
    holds_in_terms,
    primal_tol,
    row_allowance,
    rows_in_terms,
)
from lpdsl.solvers.evidence import (
    RECESSION_FAR,
    farkas,
    farkas_refined,
    feasible_point,
    is_feasible,
    receding,
)
from lpdsl.solvers.linalg import (
    ARROW_MIN_WORK,
    SPARSE_DENSITY,
    BatchedSolver,
    CGSolver,
    DenseOperator,
    SparseOperator,
)
from lpdsl.solvers.linesearch import line_search, separable_line_search
from lpdsl.solvers.scaling import (
    Scaled,
    below_normal,
    column_scales,
    magnitude_limit,
    scaled_problem,
)
from lpdsl.solvers.status import Status
from lpdsl.sparse import Pattern, SparseMatrix, broadcast_shapes
from lpdsl.validation import (
    check_positive_float,
    check_positive_int,
    check_readable,
    check_strided,
    computable,
    detached,
    eager,
    from_array,
    may_track,
    outside_transforms,
    promoted,
    wide_float,
)

EPS_START = 0.1
#: The start for a separable penalty (each row bounds one variable: the AUC model). Each
#: stage is then a single step onto the minimiser (line search per variable, see
#: ``docs/solver.md`` §2), so the continuation from 0.1 only adds stages before ε is small
#: enough for the exact active set; the start must still leave a violation ``ε |c_j| / |c|``
#: above the rounding of the residuals: float32 arithmetic starts at 1e-3.
EPS_START_SEPARABLE = 1e-7
EPS_START_SEPARABLE_F32 = 1e-3
EPS_FACTOR = 10.0
#: After a stage of at most ``EPS_FAST_STEPS`` Newton steps (one step onto the minimiser and
#: its confirmation: the path of minimisers crossed no change of pattern that needed another
#: step) an item's eps is divided by ``EPS_FACTOR_FAST`` instead (docs/solver.md §3). Not in
#: float32 arithmetic, where it cost certificates (random LPs ending MAX_ITER: 16 -> 30 of
#: 3,300).
EPS_FACTOR_FAST = 100.0
EPS_FAST_STEPS = 2
EPS_MIN = 1e-11
#: Within a stage an item that stops is frozen (step 0); the working set is compacted once
#: this fraction of it is frozen. Compaction copies the working items' data; a frozen item
#: still costs its flops (random 400x40, batch 64: 3,158 item-steps computed for 2,786 needed
#: at 1/2, 2,929 at 1/4, and 7 % less time; F-score batches unchanged).
COMPACT_FROZEN = 0.25
DEFAULT_RHO = 1e-9
#: Default shift when the arithmetic is float32: ~ its machine epsilon (1.2e-7). Below it the
#: Hessian's rounding exceeds the shift and nearly singular steps (a Charnes-Cooper scale the
#: active rows do not fix) come out as noise: at 1e-9, 10 of 64 F-score LPs ended MAX_ITER.
DEFAULT_RHO_F32 = 1e-7
DEFAULT_TOL = 1e-9
#: Default certificate tolerance when the arithmetic is float32 (``compute_dtype``).
DEFAULT_TOL_F32 = 1e-5
DEFAULT_MAX_ITER = 500
#: A stage (fixed eps) takes at most max(STAGE_MAX_ITER, STAGE_STEPS_PER_VARIABLE * n)
#: Newton steps. Its slow phase changes one or two rows per step (docs/solver.md §3), about
#: n of them on a large LP: with a flat cap of 60 every stage of ADLITTLE, ISRAEL and LOTFI
#: (n = 97-308) and of a random sparse 5,200 x 1,100 LP was cut short, and they ended MAX_ITER
#: whatever max_iter was; with 2n they are certified (docs/solver.md §3). Past
#: STAGE_MAX_ITER steps an item's stage also ends when its violated set repeats one of its
#: last CYCLE_MEMORY sets (a cycle, or a zig-zag the certificate may as well judge now: the
#: skewed NMF inputs cycle with period 6, and a cap of 2n alone made them 8x slower to fail).
#: A set's fingerprint is an exact int64 sum of fixed random row weights (float32 sums of
#: float weights gave equal fingerprints to different sets: a reviewing helper's probe).
STAGE_MAX_ITER = 60
STAGE_STEPS_PER_VARIABLE = 2
CYCLE_MEMORY = 16
UNROLL_STEPS = 8
#: Rows tight at the optimum with zero duals that fix coordinates the active rows leave free
#: enter the derivative's least squares at this weight relative to the active rows' (see
#: :func:`_pinning_weights`): small, so the active rows keep their part of the derivative,
#: and far above the shift's ``RECOVERY_SHIFT``-relative rounding. ``A_S`` has a null space
#: where more than ``PIN_TEST`` of a fixed vector survives its projection onto the null space
#: (a null direction keeps ~1/sqrt(n) of it; through the shifted factor, the screen, at most
#: 2e-5 of the range leaked on random 400x40 LPs and 6e-7 on F-score's, but shift / sigma^2
#: on a nearly singular A_S, so the refined projection decides); a tight row reaches the null
#: space where more than PIN_TEST of it (a unit row) lies along the null-space part.
PIN_WEIGHT = 1e-6
PIN_TEST = 1e-4
GOLDEN = 0.6180339887498949
#: ``backward="unroll"`` runs its steps (in float64, float32 on MPS) at no larger an eps: the
#: unrolled derivative is that of the penalty minimiser y_eps, off by O(eps) from x's, and an
#: item is often certified at eps = 0.1 (where dx/dA came out 48 % off, a helper found).
#: Below the certified eps the active set holds, so the first step lands on y_eps.
UNROLL_EPS, UNROLL_EPS_F32 = 1e-8, 1e-3
#: Newton iterations allowed to the warm stage before falling back to the full continuation.
WARM_STAGE_MAX_ITER = 10
#: A sparse, non-diagonal A with at most this many dense entries (over the batch) is solved
#: densely: one matmul per product instead of gathers and index_add scatters.
DENSE_MAX_ENTRIES = 1 << 22
#: ... unless it is almost empty: a pairwise model of 1,280 x 641 at 0.23 % density took 250
#: ms an LP densely (4 items) and 100-130 ms on its pattern (a reviewing helper); NMF's, at
#: 2.7-7.8 %, are faster densely (s = 16, 4 items: 651 against 1,006 ms).
DENSE_MIN_DENSITY = 0.01


@dataclass(frozen=True)
class Solution:
    """Result of :func:`solve`; every tensor has the batch shape ``*B`` of the inputs first.

    Attributes:
        x: ``(*B, n)`` primal solution (input dtype). For INFEASIBLE items the point of least
            violation, for UNBOUNDED items a feasible point.
        dual: ``(*B, m)`` multipliers ``>= 0`` with ``A^T dual = -c`` at an optimum; for
            INFEASIBLE items a Farkas ray (``A^T dual ~ 0``, ``b.dual < 0``); 0 for UNBOUNDED
            items (the dual LP has no feasible point).
        value: ``(*B,)`` ``c.x``; ``+inf`` for INFEASIBLE, ``-inf`` for UNBOUNDED items.
        status: ``(*B,)`` int64 values of :class:`~lpdsl.solvers.status.Status`.
        iterations: ``(*B,)`` int64 Newton iterations spent on each item.
        y: ``(*B, n)`` final penalty iterate (float64 or the compute dtype), for warm starts.
        eps: ``(*B,)`` penalty parameter (on the scaled problem) at which each item stopped.
    """

    x: torch.Tensor
    dual: torch.Tensor
    value: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor

    @property
    def optimal(self) -> torch.Tensor:
        """Boolean ``(*B,)``: which items are certified optimal."""
        return self.status == int(Status.OPTIMAL)


# --------------------------------------------------------------------------- validation


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    """``value`` as a tensor that torch computes with (:func:`~lpdsl.validation.computable`:
    booleans and wide unsigned integers as int64), numpy's long double as float64 (torch has
    no such dtype: it was "not a tensor or array")."""
    if isinstance(value, np.ndarray) and value.dtype == np.longdouble:
        value = value.astype(np.float64)
    if not isinstance(value, torch.Tensor):
        try:  # (Python numbers via numpy: floats are float64, as a layer's values)
            value = from_array(value)
        except (TypeError, ValueError, RuntimeError) as err:
            raise DSLError(
                f"solve(): argument {name} must be a tensor or array, got {type(value).__name__}"
            ) from err
    check_strided(value, f"solve(): argument {name}")
    return computable(value)


def _from_torch_sparse(A: torch.Tensor) -> SparseMatrix:
    """A 2-D torch sparse ``A`` (COO, CSR, ...) as the :class:`SparseMatrix` it means (values
    differentiable); a batched one has a pattern per item, which SparseMatrix does not take."""
    if A.dim() != 2:
        raise DSLError(
            f"solve(): argument A is a batched sparse tensor (layout {A.layout}, shape "
            f"{tuple(A.shape)}); a batch of sparse matrices must share one pattern: pass "
            "lp.SparseMatrix(pattern, values) with values of shape (*B, nnz), or "
            "SparseMatrix.from_dense(A.to_dense())"
        )
    if A.dense_dim() > 0:
        raise DSLError(
            f"solve(): argument A is a hybrid sparse tensor (layout {A.layout}, "
            f"{A.sparse_dim()} sparse and {A.dense_dim()} dense dimension(s), shape "
            f"{tuple(A.shape)}); pass a sparse matrix of scalar entries: A.to_dense().to_sparse()"
        )
    if A.requires_grad and A.layout not in (torch.sparse_coo, torch.sparse_csr):
        raise DSLError(  # torch has no backward of the conversion of CSC and the blocked ones
            f"solve(): argument A is a {A.layout} tensor that requires grad; gradients reach a "
            "sparse A through the COO or CSR layout only: pass A.to_sparse_coo()"
        )
    coo = A.to_sparse_coo().coalesce()  # unique positions, sorted row-major
    rows, cols = coo.indices()
    values = coo.values()  # booleans as 0/1 integers, as a dense A's (_as_tensor)
    values = values.long() if values.dtype == torch.bool else values
    return SparseMatrix(Pattern(rows, cols, tuple(A.shape)), values)


def _largest_entries(data: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each argument's ``max |t|`` (0 for an empty ``t``), after refusing non-finite entries:
    one pass serves the finiteness and the magnitude checks (:func:`_check_magnitude`), and
    the extremes are read together (one read instead of one per argument; in float64, which
    holds every float and int64 extreme as ``float()`` reads it). A floating ``t``'s are its
    ``aminmax`` (NaN in both where it holds one), ``max |t| = max(-min, max)``: a quarter of
    the time of an infinity norm in float64."""
    with torch.no_grad():
        found = {
            name: torch.aminmax(t) if t.is_floating_point() else (t.abs().amax(),)
            for name, t in data.items()
            if t.numel()
        }
        ends = [e if e.dtype == torch.float64 else e.double() for es in found.values() for e in es]
        read = iter(torch.stack(ends).tolist() if ends else [])
    tops = dict.fromkeys(data, 0.0)
    for name, es in found.items():
        if len(es) == 2:  # (min, max): -min first, so that a NaN (in both) stays in max()
            lo, hi = next(read), next(read)
            tops[name] = max(-lo, hi)
        else:
            tops[name] = next(read)
    for name, top in tops.items():
        if not math.isfinite(top):
            t = data[name]
            bad = int((~torch.isfinite(t)).sum())
            raise DSLError(
                f"solve(): argument {name} of shape {tuple(t.shape)} has {bad} non-finite "
                f"(NaN or Inf) entries; express missing bounds by omitting the row instead"
            )
    return tops


def _check_magnitude(tops: dict[str, float], work: torch.dtype) -> None:
    """Refuse data whose squares overflow ``work`` (``tops``: each argument's largest entry):
    the row norms and ``|c|`` would be inf (row scale 0, so rows vanish; a cost scale of inf):
    rows x 1e155 came out UNBOUNDED, a cost x 1e155 OPTIMAL at value 0, float32 arithmetic on
    entries of 1e40 a LAPACK error."""
    limit = magnitude_limit(work)
    for name, top in tops.items():
        if top > limit:
            detail = (
                f"{name} holds entries up to {top:.3g}; the method squares row and cost norms, "
                f"which overflow {work} above ~{limit:.1g}"
            )
            wider = work != torch.float64
            raise DataScaleError(
                f"solve(): {detail}: rescale the LP (divide a row of A and its b, or c, by a "
                "common factor)" + (" or compute in float64" if wider else ""),
                detail,
                wider,
            )


def _check_narrowing(A: Any, b: torch.Tensor, c: torch.Tensor, batch: tuple, work: Any) -> None:
    """Refuse data that ``work``'s range cannot hold: a row of ``A`` or a cost whose nonzero
    entries all fall below its normal range (cast, they vanish or lose their digits: the row
    ``1e-50 x_1 <= -1e-50`` of an infeasible LP disappeared in float32 arithmetic, which then
    certified it OPTIMAL), and a ``b_i`` below it whose row's bound ``|b_i| / max_j |A_ij|``
    matters at ``work``'s resolution against the item's largest such bound (the box ``0 <= x
    <= 1e-50`` came out at ``x = 0``; ``1e-30 x <= 1e-45`` at 1.4e-15 for 1e-15, the cast
    keeping few bits; a bound of 5e-8 beside one of 1 is below float32's accuracy there and
    passes). Verifying helpers, 25th pass; those that stay subnormal in ``A`` or ``c`` are
    refused by the scaling."""
    tiny = torch.finfo(work).tiny
    m = b.shape[-1]
    if isinstance(A, SparseMatrix):
        v = A.values.detach()
        top = SparseOperator(A.pattern, v.reshape(-1, v.shape[-1])).row_abs_max()
        top = top.reshape(*v.shape[:-1], m)
    else:
        top = A.detach().abs().amax(-1)
    # each item's rows with its own b, whatever broadcasts (item i of A's flattening beside
    # item i of b's checked the wrong pairs, or raised a size mismatch: a verifying helper)
    N = math.prod(batch)
    top = _flat(top, batch, N, m)
    tops = {"A": top, "c": _flat(c.detach().abs().amax(-1, keepdim=True), batch, N, 1)}
    bd = _flat(b.detach().abs(), batch, N, m)
    bound = torch.where(top > 0.0, bd / top.clamp_min(torch.finfo(top.dtype).tiny), 0.0)
    matters = bound > 8.0 * torch.finfo(work).eps * bound.amax(-1, keepdim=True)
    tops["b"] = torch.where(matters, bd, 0.0)
    for name, t in tops.items():
        place = below_normal(t, tiny)
        if place is not None:
            item, row = place
            where = f"row {row} of A" if name == "A" else name
            what = "has entries all" if name != "b" else f"has its entry {row}"
            detail = (
                f"{where} (flattened batch item {item}) {what} below {work}'s normal range "
                f"({float(t[item, row]):.3g}), where {'it' if name == 'b' else 'they'} would "
                "lose digits or vanish"
            )
            raise DataScaleError(
                f"solve(): {detail}: compute in float64 (compute_dtype=None) or rescale the LP",
                detail,
                True,
            )


def check_solve_options(
    *,
    eps: Any = None,
    rho: Any = None,
    max_iter: Any = DEFAULT_MAX_ITER,
    tol: Any = None,
    backward: Any = "active",
    compute_dtype: Any = None,
) -> None:
    """Refuse bad values of :func:`solve`'s options (not ``warm_start``) with a DSLError;
    needs no data, so a layer or loss checks its options at construction."""
    if compute_dtype not in (None, torch.float32, torch.float64):
        raise DSLError(
            f"solve(): compute_dtype must be None, torch.float32 or torch.float64, got "
            f"{compute_dtype!r}; None computes in float64 (float32 on MPS)"
        )
    if backward not in ("active", "unroll"):
        raise DSLError(
            f"solve(): backward must be 'active' or 'unroll', got {backward!r}; "
            "'active' differentiates the active-set system, 'unroll' the Newton iterations"
        )
    for name, val in (("eps", eps), ("rho", rho), ("tol", tol)):
        if val is not None:  # None: the default
            check_positive_float(name, val, of="solve()")
    if eps is not None and eps < EPS_MIN:
        # the continuation's next stage would be the eps = 0 feasibility stage: an eps of
        # 1e-15 ended MAX_ITER after one stage on LPs that the default certifies
        raise DSLError(
            f"solve(): eps={eps!r} is below {EPS_MIN:g}, the smallest start the continuation "
            "accepts (it only decreases from the start); pass a larger start or None (0.1)"
        )
    check_positive_int("max_iter", max_iter, of="solve()")


def _validate(A, b, c, backward, eps, rho, max_iter, tol, warm_start, compute_dtype):
    check_solve_options(
        eps=eps, rho=rho, max_iter=max_iter, tol=tol, backward=backward, compute_dtype=compute_dtype
    )
    given = [isinstance(v, (torch.Tensor, SparseMatrix)) for v in (A, b, c)]
    if isinstance(A, torch.Tensor) and A.layout != torch.strided:
        A = _from_torch_sparse(A)
    sparse = isinstance(A, SparseMatrix)
    # a SparseMatrix's boolean or unsigned values as a dense A's (abs of a bool: a raw error)
    A = SparseMatrix(A.pattern, computable(A.values)) if sparse else _as_tensor("A", A)
    b, c = _as_tensor("b", b), _as_tensor("c", c)
    a_shape = tuple(A.shape)
    if len(a_shape) < 2:
        raise DSLError(f"solve(): A must have shape (*B, m, n), got {a_shape}")
    if b.dim() < 1 or c.dim() < 1:
        raise DSLError(
            f"solve(): b must have shape (*B, m) and c (*B, n), got b {tuple(b.shape)}, "
            f"c {tuple(c.shape)}"
        )
    m, n = a_shape[-2:]
    if b.shape[-1] != m or c.shape[-1] != n:
        raise DSLError(
            f"solve(): A has shape {a_shape} (m={m} rows, n={n} variables), so b must end "
            f"in {m} and c in {n}; got b {tuple(b.shape)}, c {tuple(c.shape)}"
        )
    try:
        batch = broadcast_shapes(a_shape[:-2], tuple(b.shape[:-1]), tuple(c.shape[:-1]))
    except RuntimeError as err:
        raise DSLError(
            f"solve(): batch shapes do not broadcast: A {a_shape[:-2]}, b {tuple(b.shape[:-1])}, "
            f"c {tuple(c.shape[:-1])}; give them equal leading dimensions or leave some unbatched"
        ) from err
    a_values = A.values if sparse else A
    devices = {a_values.device, b.device, c.device}
    if len(devices) > 1:
        raise DSLError(
            f"solve(): A, b, c are on different devices {sorted(map(str, devices))}; "
            "move them to one device"
        )
    for name, t in (("A", a_values), ("b", b), ("c", c)):
        check_readable(t, f"solve(): argument {name}")
        if t.is_complex():
            raise DSLError(
                f"solve(): argument {name} is complex ({t.dtype}); an LP's data are real: "
                f"pass {name}.real if that is what is meant"
            )
        if forward_ad.unpack_dual(t).tangent is not None:
            # the iterations run on detached data and the derivatives are reverse-mode only:
            # x's tangent came out zero (jacfwd) or None (forward_ad), silently
            raise DSLError(
                "solve(): forward-mode differentiation (torch.func.jacfwd, jvp, hessian, "
                "torch.autograd.forward_ad) is not supported; use reverse mode "
                "(backward(), torch.func.grad, jacrev)"
            )
    tops = _largest_entries({"A": a_values, "b": b, "c": c})
    # a layer's rule (lpdsl.values.bind): tensors' floating dtypes promote, numpy arrays' and
    # Python numbers' do not, float64 where no tensor is floating (integer tensors gave float32
    # here and float64 through a layer, float32 arrays float32 here and float64 there: a
    # reviewing helper)
    strong = [
        t.dtype for t, v in zip((a_values, b, c), given, strict=True) if t.is_floating_point() and v
    ]
    dtype = promoted(strong, torch.float64)
    if warm_start is not None:
        if not isinstance(warm_start, Solution):
            raise DSLError(
                f"solve(): warm_start must be a Solution from an earlier solve(), got "
                f"{type(warm_start).__name__}"
            )
        if tuple(warm_start.y.shape) != (*batch, n):
            raise DSLError(
                f"solve(): warm_start was solved with y of shape {tuple(warm_start.y.shape)} "
                f"but this problem needs {(*batch, n)}; pass warm_start=None when shapes change"
            )
        if tuple(warm_start.eps.shape) != batch:  # a hand-built or stitched Solution
            raise DSLError(
                f"solve(): warm_start has eps of shape {tuple(warm_start.eps.shape)} but this "
                f"problem's batch is {batch}; pass the Solution an earlier solve() returned, or "
                "warm_start=None"
            )
    return A, b, c, batch, m, n, dtype, a_values, tops


def _check_fits(
    out_dtype: torch.dtype, work: torch.dtype, optimal: torch.Tensor, **parts: torch.Tensor
) -> None:
    """Refuse an optimum that the inputs' dtype cannot hold: float16 (max 65504) rounded
    x = 6e4 at value -1.2e5 to a value of -inf with status OPTIMAL. ``parts``: ``(k, n)`` or
    ``(k,)``."""
    top = torch.finfo(out_dtype).max
    if top >= torch.finfo(work).max:
        return
    kept = {
        name: torch.where(optimal[:, None], t.detach() if t.dim() > 1 else t.detach()[:, None], 0.0)
        for name, t in parts.items()
    }
    if not any(bool(t.to(out_dtype).isinf().any()) for t in kept.values()):
        return
    worst = max(kept, key=lambda k: float(kept[k].abs().amax()))
    raise DSLError(
        f"solve(): the optimal {worst} reaches {float(kept[worst].abs().amax()):.3g}, beyond "
        f"the range of {out_dtype} (max {top:.3g}), the inputs' dtype and so the solution's; "
        "pass A, b, c as float32 or float64"
    )


# --------------------------------------------------------------------------- the Newton core


def _stage(
    P: Scaled,
    y: torch.Tensor,
    eps: torch.Tensor,
    rho: float,
    budget: torch.Tensor,
    cache: tuple[torch.Tensor, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple | None]:
    """Newton iterations at fixed ``eps`` until the violated rows are those the last step's
    Hessian weighted (the step was taken on the quadratic piece it lands on).

    A stage also ends for an item at its step cap, ``max(STAGE_MAX_ITER,
    STAGE_STEPS_PER_VARIABLE n)``, or, past ``STAGE_MAX_ITER`` steps, when its violated set
    repeats one of its last ``CYCLE_MEMORY``.

    Returns the new ``y``, iterations used per item, the items whose line search found the
    penalty unbounded below (their ``y`` is then the far point along the ray; ``None`` where
    no item's was), the violated-row pattern at the returned ``y``, and ``(pattern, solver)``
    of the last Hessian factorisation if it covered all items of ``P`` (else ``None``).
    Passing that back as ``cache`` for the same items skips the first factorisation of the
    next stage when its pattern is the same (a stage ends on a repeated pattern, so this is
    the common case).

    An item that stops is frozen (step length 0) rather than removed, and the working set is
    compacted only once ``COMPACT_FROZEN`` of it is frozen: compaction costs a dozen indexing
    operations, a copy of the working items' data and the factorisation, while a frozen item
    costs only flops.
    """
    k = y.shape[0]
    # every item's y, iterations and violated rows, made at the first compaction (until then
    # the working items are all of them)
    y_out = its_out = viol_out = None
    unbounded = None  # (k,) bool, made when an item's penalty is found unbounded below
    idx = None  # global indices of the working items; None while all are working
    # Iterations of the working items: the Python number `steps` until a step leaves an item
    # frozen, a tensor `its` from then on; until then the budgets are compared only once
    # `steps` reaches the smallest (a comparison, and at a stage's first step a count, fewer).
    steps, its, bud_min = 0, None, int(budget.min()) if k else 0

    def its_now(n: int) -> torch.Tensor:
        return torch.full((n,), steps, dtype=torch.long, device=y.device) if its is None else its

    sub, ya, ea, bud, prev = P, y, eps.unsqueeze(1), budget, None  # ea: eps as a column
    ecs = ea * sub.cs  # the gradient's linear part
    frozen = None  # (working,) bool or None when no working item is frozen
    gram = None  # a dense A's (weights, A^T W A, A^T W b) of the last step, updated step to step
    # ... from which float64 takes the gradient A^T relu(r) = A^T W (A y - b) = H y - h without
    # a pass over A (docs/solver.md §6); other operators and dtypes take A^T relu(r)
    gram_grad = P.ops.kind == "dense" and P.bs.dtype == torch.float64

    sep = P.ops.separable
    r = sub.residual(ya)
    seen = probe = None  # fingerprints of the last CYCLE_MEMORY violated sets (long stages)
    for step in range(max(STAGE_MAX_ITER, STAGE_STEPS_PER_VARIABLE * y.shape[-1])):
        # (made at a stage's first step only where needed: that step weights r >= 0)
        viol = None if prev is None else r > 0.0
        stop = None  # (working,) bool, or None where no item stops
        if its is not None:
            stop = its >= bud
        elif steps >= bud_min:
            stop = bud <= steps
        if prev is not None:
            same = (viol == prev).all(-1)
            stop = same if stop is None else stop | same
        if step >= STAGE_MAX_ITER:  # a long stage: stop items whose violated set repeats
            if probe is None:  # fixed pseudo-random integer row weights: exact sums
                gen = torch.Generator().manual_seed(0)
                probe = torch.randint(1, 1 << 40, (r.shape[-1],), generator=gen).to(r.device)
                seen = torch.full((r.shape[0], CYCLE_MEMORY), -1, device=r.device)
            print_ = (viol.long() * probe).sum(-1)
            stop = stop | (seen == print_.unsqueeze(-1)).any(-1)
            seen = torch.cat([seen[:, 1:], print_.unsqueeze(-1)], -1)
        if frozen is not None:
            stop = frozen if stop is None else stop | frozen
        n_stop, kk = 0 if stop is None else int(stop.count_nonzero()), ya.shape[0]
        if n_stop == kk:
            viol = r > 0.0 if viol is None else viol
            break
        frozen = stop if n_stop else None
        if n_stop >= COMPACT_FROZEN * kk:  # compact: write back the stopped items, keep the rest
            viol = r > 0.0 if viol is None else viol
            its = its_now(kk)
            if idx is None:  # the first: every item's outputs start as the working ones
                y_out, its_out, viol_out = ya.clone(), its.clone(), viol.clone()
            else:
                g = idx[stop]
                y_out[g], its_out[g], viol_out[g] = ya[stop], its[stop], viol[stop]
            keep = ~stop
            idx = keep.nonzero().squeeze(1) if idx is None else idx[keep]
            ya, ea, bud, its, ecs = ya[keep], ea[keep], bud[keep], its[keep], ecs[keep]
            r, viol, frozen = r[keep], viol[keep], None
            seen = None if seen is None else seen[keep]
            sub = P.take(idx)
            gram = None if gram is None else tuple(None if t is None else t[keep] for t in gram)
        # A stage's first step also weights the rows on their boundary (r = 0): at the kink of
        # relu(r)^2 any weight in [0, 1] is a generalized Hessian, and from a start on many
        # boundaries (y = 0 and rows with b = 0, as the F-score model's) weight 0 leaves the
        # Hessian singular and the line search cuts its huge step at once.
        hess = r >= 0.0 if prev is None else viol
        if prev is None and cache is not None and idx is None and bool((hess == cache[0]).all()):
            solver, from_gram = cache[1], False
        else:
            w = hess.to(r.dtype)
            solver, gram = sub.ops.newton_solver(w, rho, gram, sub.bs if gram_grad else None)
            from_gram = gram_grad
            cache = (hess, solver) if idx is None else None
        if from_gram:
            grad = torch.bmm(gram[1], ya.unsqueeze(-1)).squeeze(-1) - gram[2] + ecs
        else:
            grad = sub.ops.rmatvec(r.clamp_min(0.0)) + ecs
        d = solver(grad).neg_()
        q = sub.ops.matvec(d)
        if sep is None:
            lam, unb = line_search(r, q, ea * (sub.cs * d).sum(-1, keepdim=True), frozen)
        else:  # one step per variable: the step lands on the minimiser
            lam, unb = separable_line_search(r, q, ecs * d, sep, frozen)
        if frozen is not None:
            lam = lam.masked_fill(frozen.unsqueeze(1), 0.0)
            unb = None if unb is None else unb & ~frozen
            its = its_now(kk) + (~frozen).long()
        elif its is None:
            steps += 1
        else:
            its = its + 1
        ya = ya + lam * d
        # the residual moves linearly along d: no product needed
        r = r + (lam if sep is None else sub.ops.gather(lam, sep.row_col)) * q
        prev = hess
        if unb is not None and bool(unb.any()):  # freeze at the far point along the ray
            if unbounded is None:
                unbounded = torch.zeros(k, dtype=torch.bool, device=y.device)
            unbounded[unb.nonzero().squeeze(1) if idx is None else idx[unb]] = True
            frozen = unb if frozen is None else frozen | unb
        if sep is not None:  # every variable is at its own term's minimiser: the stage is done
            viol = r > 0.0
            break
    else:
        viol = r > 0.0
    its = its_now(ya.shape[0])
    if idx is None:
        return ya, its, unbounded, viol, cache
    y_out[idx], its_out[idx], viol_out[idx] = ya, its, viol
    return y_out, its_out, unbounded, viol_out, cache


def _norm(t: torch.Tensor) -> torch.Tensor:
    """``t.norm(dim=-1)``, the same kernel without ``Tensor.norm``'s two Python layers."""
    return torch.linalg.vector_norm(t, dim=-1)


@functools.lru_cache(maxsize=32)
def _pin_probe(
    n: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_pinning_weights`' fixed vector ``a`` ``(n,)``, entries in [0.5, 1.5), and its
    screening level ``PIN_TEST |a|`` ``(1,)``, made once per size (six dispatched operations a
    tracked solve otherwise); outside inference mode and ``torch.func``'s transforms, as they
    outlive the call, and never changed in place."""
    with torch.inference_mode(False), outside_transforms(), torch.no_grad():
        a = torch.arange(n, dtype=dtype, device=device).mul_(GOLDEN).frac_() + 0.5
        return a, PIN_TEST * _norm(a.unsqueeze(0))


def _pinning_weights(
    op: Any,
    D: torch.Tensor,
    b: torch.Tensor,
    x: torch.Tensor,
    weights: torch.Tensor,
    solve: Any,
    live: torch.Tensor,
    tol: float,
) -> torch.Tensor | None:
    """The derivative's row weights where tight rows with zero duals pin coordinates.

    The active set ``S`` (positive penalty duals) leaves coordinates free where ``A_S`` has
    a null space; rows tight at ``x`` with zero duals can still fix them (``x_0 == p`` with
    ``x_0`` absent from the objective), and then ``x`` is unique and differentiable while
    ``K = (A_S^T W A_S)^+`` gives those coordinates a derivative of 0. For an item of
    ``live``, ``w = a - K A_S^T W A_S a`` is the null-space part of a fixed vector ``a``
    (entries in [0.5, 1.5)); where it holds more than ``PIN_TEST`` of ``a``, the item's
    tight, zero-weight rows that reach the null space (more than ``PIN_TEST`` of the unit
    row along ``w``) join the weights at ``PIN_WEIGHT`` times their ``D^2``. They are
    consistent with ``S`` where they stay tight (an equality's rows), and then the weight
    does not matter; rows within ``S``'s span are left out, so the derivatives where
    ``A_S`` has full rank stay as they were (docs/solver.md §7). ``w`` is screened through
    ``solve``'s shifted factor (which keeps the null space whole and leaks ``shift /
    sigma^2`` of the rest: a nearly singular ``A_S`` passes the screen) and confirmed by
    the refined ``K``. ``None`` where no item needs it.
    """
    a, level = _pin_probe(x.shape[-1], x.dtype, x.device)  # (level: every item's)
    a = a.expand_as(x)
    h = op.rmatvec(weights * op.matvec(a))  # A_S^T W A_S a
    screen = live & (_norm(a - solve(h)) > level)
    if not bool(screen.any()):
        return None
    w = null_part(op, solve, weights, a, h)
    null = screen & (_norm(w) > level)
    if not bool(null.any()):
        return None
    r = D * (op.matvec(x) - b)
    # the certificate's allowance (primal_tol), with |x| bounding each row's terms
    base, rounding = row_allowance(D * b, x.abs().amax(-1, keepdim=True), x, tol)
    allow = base + rounding
    reach = (D * op.matvec(w)).abs() > PIN_TEST * w.norm(dim=-1, keepdim=True)
    pins = (r.abs() <= allow) & (weights == 0.0) & reach & null[:, None]
    if not bool(pins.any()):
        return None
    return weights + PIN_WEIGHT * D * D * pins.to(r.dtype)


@dataclass
class _Result:
    y: torch.Tensor
    eps: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    weights: torch.Tensor
    x: torch.Tensor
    dual: torch.Tensor
    dual_is_ls: torch.Tensor
    D: torch.Tensor
    gamma: torch.Tensor
    #: a detached solver of every item's recovery system, when one factorisation served them
    #: all (they were certified together); the backward reuses it
    solver: Any = None

    def released(self) -> _Result:
        """A copy whose tensors that reach autograd and users are ordinary ones: those made in
        inference mode cannot be saved for backward or changed in place. ``dual_is_ls`` (only
        combined into a new mask), ``D`` and ``gamma`` (read under ``no_grad``; the unrolled
        backward takes copies) stay as they are: each copy is a dispatched operation."""
        return _Result(
            y=self.y.clone(),
            eps=self.eps.clone(),
            status=self.status.clone(),
            iterations=self.iterations.clone(),
            weights=self.weights.clone(),
            x=self.x.clone(),
            dual=self.dual.clone(),
            dual_is_ls=self.dual_is_ls,
            D=self.D,
            gamma=self.gamma,
            solver=self.solver.clone() if isinstance(self.solver, BatchedSolver) else None,
        )


def _without_autograd() -> contextlib.AbstractContextManager:
    """``inference_mode`` for the iterations: it skips autograd's version and view bookkeeping,
    and small solves are per-operation overhead (4-19 % faster, docs/performance.md). Under a
    ``torch.func`` transform (``torch.func.grad``) its tensors are wrapped, and inference mode
    refuses them ("Cannot set version_counter for inference tensor"): ``no_grad`` there, and
    wherever torch does not say whether a transform is active."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return torch.no_grad() if active is None or active() else torch.inference_mode()


def _flat(t: torch.Tensor, batch: tuple, N: int, k: int) -> torch.Tensor:
    """``t`` ``(..., k)`` broadcast to ``(*batch, k)``, as ``(N, k)`` (no expand where it has
    that shape already: an expand is a dispatched operation even where it changes nothing)."""
    return (t if t.shape == (*batch, k) else t.expand(*batch, k)).reshape(N, k)


def _into(dst: torch.Tensor, idx: torch.Tensor | None, src: torch.Tensor) -> torch.Tensor:
    """``dst`` with its rows ``idx`` replaced by ``src`` (out of place); all rows if ``None``."""
    return src if idx is None else dst.index_put((idx,), src)


def default_tol(work: torch.dtype) -> float:
    """:func:`solve`'s certificate tolerance for arithmetic in ``work`` when none is given."""
    return DEFAULT_TOL if work == torch.float64 else DEFAULT_TOL_F32


def _holds_unscaled(
    op: Any, b: torch.Tensor, c: torch.Tensor, res: _Result, S: torch.Tensor, tol: float
) -> torch.Tensor:
    """Per item: does the verdict of a solve in ``x = S x'`` hold for the LP in its own units?

    The certificate's tolerances are relative to the rows and the cost as scaled, which the
    column scaling changes: a bound ``x_j <= u`` of a column scaled by ``S_j`` reads ``x'_j <=
    u / S_j``, so a violation within ``tol`` there is ``S_j tol`` in ``x_j``, and the gap
    and stationarity tests scale with ``|S c|``, which can exceed ``|c|`` by orders of
    magnitude (``min -x_0, x_0 <= 1, 1e-30 x_0 + x_1 <= 1, ...`` was certified at ``x_0 =
    127.8``; a box LP with one coefficient of 1e-13 at -2.42 for -2.7: a reviewing helper's
    fuzz). So every OPTIMAL item is certified again in the original units (primal, dual,
    gap), with its dual stationary and nonnegative to rounding there (``ROUNDING_ULPS``): a
    reduced cost the scaled solve judged rounding can move the value along a long edge,
    which the certificate's ``tol`` lets through (``0 <= x_1 <= 1e10`` at cost ``-5e-10``
    beside a column scaled by 1e12: -1 for -6; slightly negative duals on far bounds put
    boxed LPs 0.08-0.6 % off where the unscaled solve ended MAX_ITER: a verifying helper's
    fuzz). Every UNBOUNDED item's feasible point is checked there; INFEASIBLE rays are exact
    to rounding column by column, which a column scaling does not change."""
    P0, _ = scaled_problem(op, b, c)
    x = res.x * S  # (its entries within rounding of 0 are 0: _snapped)
    optimal = res.status == int(Status.OPTIMAL)
    unbounded = res.status == int(Status.UNBOUNDED)
    holds = torch.ones_like(optimal)
    if bool(optimal.any()):
        ok, _, _, exact, _, _, _ = certify(P0, x, res.dual, tol)
        holds = ~optimal | (ok & exact)
    if bool(unbounded.any()):
        holds = holds & (~unbounded | is_feasible(P0, x, tol))
    return holds


def _snapped(x: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """``x`` (a scaled run's, in ``x' = x / S``) with its entries within rounding of 0 (64 ulps
    of its largest) set to 0 in the columns that ``S`` enlarges: times ``S_j ~ 2^24``, a
    residue of -6e-17 (batched and single products round differently) broke a bound row by
    1e-9 in the LP's units, and an item certified alone ended MAX_ITER beside any batch-mate;
    the point certified and the point returned are this one (checking a snapped copy, a
    residue of 1e-13 times 2^30 came back as x_6 = -6.8e-5 on an OPTIMAL item: verifying
    helpers' probes, eighteenth pass). Only there: a batch-mate's column scaling snapped the
    y = 1e-9 of an item beside x = 1e6, whose own scales are 1, to 0 below its floor y >= 1e-9,
    and in float32 a big-M item's y ~ 1e-6 (a fuzzing helper, 21st pass)."""
    level = ROUNDING_ULPS * torch.finfo(x.dtype).eps * x.abs().amax(-1, keepdim=True)
    return torch.where((x.abs() <= level) & (S > 1.0), 0.0, x)


def _either(a: _Result, b: _Result, take_b: torch.Tensor) -> _Result:
    """Per item, ``b``'s result where ``take_b``, else ``a``'s (iterations: both runs'); the
    factorisation kept for the backward only where one run served every item."""
    spent = a.iterations + b.iterations
    if bool(take_b.all()) or not bool(take_b.any()):
        return replace(b if bool(take_b.any()) else a, iterations=spent)
    mixed = {}
    for f in fields(a):
        if f.name not in ("solver", "iterations"):
            u, v = getattr(a, f.name), getattr(b, f.name)
            mixed[f.name] = torch.where(take_b.view(-1, *[1] * (max(u.dim(), v.dim()) - 1)), v, u)
    return replace(a, **mixed, iterations=spent, solver=None)


def _newton(
    op,
    b: torch.Tensor,
    c: torch.Tensor,
    eps0: float,
    rho: float,
    max_iter: int,
    tol: float,
    y0: torch.Tensor | None,
    eps_init: torch.Tensor | None,
    active0: torch.Tensor | None = None,
) -> _Result:
    N, m = b.shape
    n = c.shape[-1]
    dev, dt = b.device, b.dtype
    fast_factor = EPS_FACTOR_FAST if dt == torch.float64 else EPS_FACTOR
    P, empty = scaled_problem(op, b, c)
    D, gamma = P.D, P.gamma
    wide = None  # float32 arithmetic: the batch's data in float64, for refined Farkas rays

    def refined(Pi: Scaled, gi: torch.Tensor, yi: torch.Tensor) -> tuple:
        """:func:`farkas_refined` on the items ``gi`` (places in the batch) at ``yi``; in
        float32 arithmetic on the (float32) data and ``yi`` taken to float64, where the
        rounding of ``A^T r`` lies far below any slope a feasible LP can have."""
        nonlocal wide
        if dt == torch.float64:
            return farkas_refined(Pi, yi, tol)
        if wide is None:
            f64 = (t.double() for t in (D, b, c, gamma))
            wide = Scaled.of(op.to(torch.float64), *f64, empty)
        ok_i, ray_i = farkas_refined(wide.take(gi), yi.double(), tol)
        return ok_i, ray_i.to(dt)

    # The working set: the items still running, ``gidx`` their places in the batch. An item's
    # results are set aside when it finishes, and the working set is compacted only then, so
    # a stage in which no item finishes does no indexing.
    gidx = torch.arange(N, device=dev)
    y = torch.zeros(N, n, dtype=dt, device=dev) if y0 is None else y0.clone()
    eps = torch.full((N,), eps0, dtype=dt, device=dev) if eps_init is None else eps_init.clone()
    iters = torch.zeros(N, dtype=torch.long, device=dev)
    # The state below is replaced, never changed in place, so the zeros of one shape and
    # dtype start as one tensor (each creation is a dispatched operation).
    no = torch.zeros(N, dtype=torch.bool, device=dev)
    zeros_m = torch.zeros(N, m, dtype=dt, device=dev)
    x, dual = y, zeros_m  # the last recovered pair (or y)
    dual_is_ls, weights, recession = no, zeros_m, no
    last_count = None  # the previous stage's count of violated rows (None: no stage yet)
    far_out = None  # where an iterate diverges (see receding), made at its first use
    # the continuation's last eps, relative to the LP's length scale where that is below 1 (as
    # the primal test's allowance, primal_tol): the penalty minimiser lies O(eps) from the
    # optimum, and of the rows z >= 1e-12, z >= 0 both stayed violated down to 1e-11 (x at
    # their midpoint, MAX_ITER; the AUC model at a pair's gap within 1e-7 of the margin: a
    # reviewing helper's probe, twentieth pass); not below sqrt(tiny) of that: at |b| ~ 1e-300
    # it underflowed, and value and dual came out NaN (a verifying helper)
    floor = P.length.clamp_min(math.sqrt(torch.finfo(dt).tiny)) * EPS_MIN
    # A warm-started item gets one short stage at its previous eps; if that does not certify
    # (the data moved a lot, e.g. an unrelated minibatch) it restarts cold: y = 0, eps = eps0.
    warm = eps_init is not None  # only the first stage is warm, for every item

    finished = []  # (places, (x, dual, dual_is_ls, weights, y, eps, iters, status)) per stage
    # A row without coefficients is 0 <= b_i: with b_i < 0 the item is infeasible, and the unit
    # ray e_i is its Farkas certificate. The penalty cannot be trusted to say so: the row's
    # constant violation was certified away next to |x| ~ 1e3 (x <= 1e3, 0 <= -1e-6: OPTIMAL).
    # (scaled_problem gives no ``empty`` where every row's squared norm is normal: none is)
    void = None if empty is None else empty & (b < 0.0)
    has_void = void is not None and bool(void.any())
    if has_void:  # a rounding residue (x + 0.1 + 0.2 == x + 0.3 compiles to the rows
        # 0 <= -/+5.6e-17) is met to the certificate's allowance, as any row's violation is
        # (absolute: read in the typical row's units, a residue beside rows of norm 1e-8 was
        # INFEASIBLE, and only the compiler knows the constants that cancelled: docs/solver.md
        # §10)
        void = void & (-P.bs > primal_tol(P, torch.zeros(N, n, dtype=dt, device=dev), tol))
        has_void = bool(void.any())
    # items settled before any Newton step (a void row; a warm start's active set), dropped
    # from the working set together below
    ended, any_ended = no, False
    if has_void:
        ended, any_ended = void.any(-1), True
        fi = ended.nonzero().squeeze(1)
        worst = torch.where(void[fi], b[fi], torch.zeros_like(b[fi])).argmin(-1)
        ray = torch.nn.functional.one_hot(worst, m).to(dt)
        status = torch.full_like(fi, int(Status.INFEASIBLE))
        done = (x[fi], ray, dual_is_ls[fi], weights[fi], y[fi], eps[fi], iters[fi], status)
        finished.append((fi, done))
    # A warm start's optimal active set, tried on the new data before any Newton step: where
    # the data moved little it is often still optimal, and one recovery certifies the item
    # (the warm stage needed more than its 10 steps for that on 800x80 LPs, docs/solver.md §9)
    tried = None if active0 is None else active0.any(-1) & ~ended
    if tried is not None and bool(tried.any()):
        ti = tried.nonzero().squeeze(1)
        Pt = P.take(ti)
        xt, vt, ls_t, ok_t, act_t, _ = certify_stage(Pt, y[ti], active0[ti], eps[ti], tol)
        if bool(ok_t.any()):
            ok_t = ok_t & holds_in_terms(op.take(ti), b[ti], c[ti], xt, vt, tol, empty is None)
        if bool(ok_t.any()):
            fi = ti[ok_t]
            status = torch.full_like(fi, int(Status.OPTIMAL))
            w_t = (Pt.D * Pt.D * act_t.to(dt))[ok_t]
            done = (xt[ok_t], vt[ok_t], ls_t[ok_t], w_t, y[fi], eps[fi], iters[fi], status)
            finished.append((fi, done))
            ended, any_ended = ended.index_fill(0, fi, True), True
    if any_ended:
        keep = (~ended).nonzero().squeeze(1)
        gidx, P, recession, floor = gidx[keep], P.take(keep), recession[keep], floor[keep]
        x, dual, dual_is_ls, weights, y, eps, iters = (
            t[keep] for t in (x, dual, dual_is_ls, weights, y, eps, iters)
        )
    final_solver = None
    cache, cache_n = None, -1  # the last stage's Hessian factorisation (see _stage)
    # Each item's iteration limit: max_iter, plus the warm stage's iterations for an item that
    # restarts cold (a warm start from unrelated data must not eat into the cold solve's budget)
    limit = torch.full_like(iters, max_iter)
    while gidx.numel():
        k = gidx.numel()
        # -1: continues (every item's until the certificate's verdicts, which make the tensor)
        status = None
        jumped = None  # moved by _improvable's step (None: no item was)
        budget = limit - iters
        if warm:
            budget = budget.clamp_max(WARM_STAGE_MAX_ITER)
        reuse = cache if cache is not None and cache_n == k else None
        y, its, unb, viol, cache = _stage(P, y, eps, rho, budget, reuse)
        cache_n = k  # the working set only shrinks: same size means same items
        iters = iters + its
        x, ek, y_end = y, eps, y
        # A certificate (recovery + checks) costs several Newton steps, so it is attempted only
        # when the violated set repeats the previous stage's (the exact active set is stable
        # under continuation), on the last stage, when the budget is spent, or after a warm stage.
        # "Repeats" counts rows: of an equality's two rows either one may be the violated one,
        # and which one flips between stages on degenerate models (NMF: ~180 of 507 rows flip
        # at every stage, so comparing sets put off the certificate to the last stage).
        n_viol = viol.sum(-1)
        small = n_viol <= n  # at most a vertex's worth of active rows: worth a try
        live, spent = ek > 0.0, iters >= limit
        # two Python numbers make a tensor of torch's default dtype: float64 after
        # torch.set_default_dtype, which turned float32 arithmetic into a dtype clash
        factor = torch.where(its <= EPS_FAST_STEPS, fast_factor, EPS_FACTOR).to(eps.dtype)
        e_next = eps / factor
        # the last stage with eps > 0: the next eps (divided by 100 after a fast stage) is
        # below the floor, so the continuation goes on with the eps = 0 feasibility stage
        last = e_next < floor
        repeats = small if last_count is None else (n_viol == last_count) | small
        attempt = repeats | last | spent
        if warm:
            attempt = torch.ones_like(attempt)
        last_count = n_viol
        # --- the penalty is unbounded below along d: a recession direction with c.d < 0.
        # Feasibility is decided by a pure feasibility stage from y = 0, not at the far point
        # along d: far out, the residual of an infeasible row can drown in the rounding of A y
        # (float32: a violation of 0.23 at |y| = 1.7e6 passed as feasible: UNBOUNDED, wrongly).
        has_unb = unb is not None
        if has_unb:  # (a ray needs eps > 0: the slope eps c.d is negative)
            recession = recession | unb
            y, eps = torch.where(unb[:, None], 0.0, y), torch.where(unb, 0.0, eps)
        # --- certificate of optimality (items with eps > 0 and no ray)
        cand = live & attempt & ~unb if has_unb else live & attempt
        every = bool(cand.all())  # (read first: usually every item is a candidate)
        if every or bool(cand.any()):
            # The last Newton factorisation (shift rho) serves the recovery when its pattern
            # is the active set (its items' part when only some items are candidates), and
            # refinement removes the shift's bias. (Items it did not certify were once
            # recovered again with a fresh factor; measured, that never certified one, and
            # it was why only a whole batch reused the factor: docs/solver.md §5.)
            ci = None if every else cand.nonzero().squeeze(1)
            Pc = P if ci is None else P.take(ci)
            yc, vc, ec = (x, viol, ek) if ci is None else (x[ci], viol[ci], ek[ci])
            solve_c = None
            if (
                cache is not None
                and rho <= RECOVERY_SHIFT
                and (every or isinstance(cache[1], BatchedSolver))
                and not (isinstance(cache[1], CGSolver) and cache[1].inexact)
                and bool((vc == (cache[0] if every else cache[0][ci])).all())
            ):
                solve_c = cache[1] if every else cache[1].take(ci)
            xc, v, ok_ls, ok, act, jump = certify_stage(Pc, yc, vc, ec, tol, solve_c)
            if bool(ok.any()):
                # judged against its own terms too: an item that fails is not certified and
                # goes on with the continuation (of min x, x >= 1e-9, 0 <= x <= 1, the point
                # 5e-10 passed the unit-row test at eps = 1e-3 and then ended MAX_ITER: a
                # verifying helper, 21st pass)
                gc = gidx if ci is None else gidx[ci]
                # (scaled_problem gives no ``empty`` where every row has a nonzero norm)
                nz = empty is None
                if gc.numel() == N:  # every item, in batch order
                    ok = ok & holds_in_terms(op, b, c, xc, v, tol, nz)
                else:
                    ok = ok & holds_in_terms(op.take(gc), b[gc], c[gc], xc, v, tol, nz)
            if jump is not None:  # a certificate refused with a feasible descent move: take it,
                # and stay at this eps (the move is progress the continuation need not pay for)
                moved = (jump != 0.0).any(-1)
                y = _into(y, ci, torch.where(moved[:, None], xc + jump, yc))
                jumped = moved if ci is None else torch.zeros_like(cand).index_put((ci,), moved)
            # every item certified on this factorisation, none completed beyond its pattern
            if (
                solve_c is not None
                and every
                and k == N
                and bool(ok.all())
                and bool((act == viol).all())
            ):
                final_solver = solve_c
            x, dual, dual_is_ls = _into(x, ci, xc), _into(dual, ci, v), _into(dual_is_ls, ci, ok_ls)
            weights = _into(weights, ci, Pc.D * Pc.D * act.to(dt))
            optimal = ok if ci is None else torch.zeros_like(cand).index_put((ci,), ok)
            status = torch.where(optimal, int(Status.OPTIMAL), -1)
        if status is None:
            status = torch.full((k,), -1, dtype=torch.long, device=dev)
        # --- infeasibility (Farkas) and the end of the continuation
        rest = (status < 0) & ~unb if has_unb else status < 0
        any_rest = bool(rest.any())
        if any_rest:
            go_on = rest & live
            check = rest & (attempt | ~live)
            if bool(check.any()):
                ri = check.nonzero().squeeze(1)
                far_r, ray = farkas(P.take(ri), y[ri], tol)
                if bool(far_r.any()):  # only a ray exact to rounding proves it (farkas)
                    pos = far_r.nonzero().squeeze(1)
                    ai = ri[pos]
                    ok_a, ray_a = refined(P.take(ai), gidx[ai], y[ai])
                    far_r, ray = far_r.index_put((pos,), ok_a), ray.index_put((pos,), ray_a)
                dual = dual.index_put((ri[far_r],), ray[far_r])
                far = _into(torch.zeros_like(check), ri, far_r)
                status = torch.where(far, int(Status.INFEASIBLE), status)
                go_on = go_on & ~far
                li = ri[(~far_r) & ~live[ri]]  # the feasibility stage ended: no ray
                if li.numel():
                    found, x_f = feasible_point(P.take(li), y[li], tol)
                    unbounded = found & recession[li]
                    ends = torch.where(unbounded, int(Status.UNBOUNDED), int(Status.MAX_ITER))
                    status = status.index_put((li,), ends)
                    # an UNBOUNDED item's x is that feasible point, its dual 0 (none exists):
                    # an earlier stage's recovery left x and a dual of 1e9 (a reviewing helper)
                    ui = li[unbounded]
                    x, dual = x.index_put((ui,), x_f[unbounded]), dual.index_fill(0, ui, 0.0)
            # --- a diverging iterate: recession evidence; feasibility is decided from y = 0
            if far_out is None:  # 6.1e4 (float64), 2.0e2 (float32) times 1 + |D b|
                far_out = torch.finfo(dt).eps ** -RECESSION_FAR * (1.0 + P.bs.abs().amax(-1))
            div = go_on & (_norm(y) > far_out)
            if bool(div.any()):
                di = div.nonzero().squeeze(1)
                rec = _into(torch.zeros_like(div), di, receding(P.take(di), y[di], tol))
                recession = recession | rec
                y, eps = torch.where(rec[:, None], 0.0, y), torch.where(rec, 0.0, eps)
                go_on = go_on & ~rec
            e_new = torch.where(last, 0.0, e_next)
            if jumped is not None:
                e_new = torch.where(jumped, eps, e_new)
            if warm:  # a warm item that did not certify restarts cold, with its full budget
                e_new = torch.full_like(e_new, eps0)
                y = torch.where(go_on[:, None], 0.0, y)
                limit = torch.where(go_on, limit + its, limit)
                spent = iters >= limit
            eps = torch.where(go_on, e_new, eps)
        warm = False
        if not (any_rest or has_unb):  # every item certified at this stage (the usual end)
            finished.append((gidx, (x, dual, dual_is_ls, weights, y, eps, iters, status)))
            break
        status = torch.where((status < 0) & spent, int(Status.MAX_ITER), status)
        fin = status >= 0
        if not bool(fin.any()):
            continue
        # --- an item about to end MAX_ITER or UNBOUNDED: the Farkas test on a refined ray,
        # exact to rounding (it costs a factorisation, so only here; see farkas_refined).
        # Proved infeasibility outranks a feasible point met to tol (1 + |D b_i|): that
        # allowance hid gaps of 1e-7..1e-3 (unit rows) at |D b| ~ 1e3..1e8, and 14 infeasible
        # LPs of a translated family were UNBOUNDED (10 now INFEASIBLE, 4 still UNBOUNDED).
        weak = (status == int(Status.MAX_ITER)) | (status == int(Status.UNBOUNDED))
        if bool(weak.any()):
            wi = weak.nonzero().squeeze(1)
            ok_w, ray_w = refined(P.take(wi), gidx[wi], y_end[wi])
            if bool(ok_w.any()):
                dual = dual.index_put((wi[ok_w],), ray_w[ok_w])
                status = status.index_fill(0, wi[ok_w], int(Status.INFEASIBLE))
        done = (x, dual, dual_is_ls, weights, y, eps, iters, status)
        if bool(fin.all()):
            finished.append((gidx, done))
            break
        fi = fin.nonzero().squeeze(1)
        finished.append((gidx[fi], tuple(t[fi] for t in done)))
        keep = (~fin).nonzero().squeeze(1)
        gidx, P, recession, last_count = gidx[keep], P.take(keep), recession[keep], last_count[keep]
        floor, limit = floor[keep], limit[keep]
        far_out = None if far_out is None else far_out[keep]
        x, dual, dual_is_ls, weights, y, eps, iters = (t[keep] for t in done[:-1])
        if cache is not None and cache_n == k and isinstance(cache[1], BatchedSolver):
            # the remaining items' part of the last factorisation, for the next stage's start
            cache, cache_n = (cache[0][keep], cache[1].take(keep)), keep.numel()
    if len(finished) == 1:  # every item finished in the same stage, in batch order
        out = finished[0][1]
    elif not finished:  # an empty batch
        out = (x, dual, dual_is_ls, weights, y, eps, iters, iters.clone())
    else:
        places = torch.cat([g for g, _ in finished])  # a permutation of the batch
        stacked = (torch.cat(parts) for parts in zip(*(ts for _, ts in finished), strict=True))
        out = tuple(t.index_copy(0, places, t) for t in stacked)
    x, dual, dual_is_ls, weights, y, eps, iters, status = out
    x = x.clone() if x is y else x  # an item never recovered: its x is its y
    return _Result(y, eps, status, iters, weights, x, dual, dual_is_ls, D, gamma, final_solver)


def _without_variables(b: torch.Tensor, batch: tuple, m: int, dtype: torch.dtype) -> Solution:
    """An LP with no variables is the system ``0 <= b``: OPTIMAL with value 0 where it holds,
    else INFEASIBLE with the unit ray of its most violated row (``A^T e_i = 0``,
    ``b.e_i < 0``) as ``dual``. The value is connected to ``b`` with gradient ``-dual = 0``."""
    bb = b.expand(*batch, m).to(dtype)
    worst = bb.detach().min(-1)
    feasible = worst.values >= 0.0
    ray = torch.nn.functional.one_hot(worst.indices, m).to(dtype) * (~feasible).unsqueeze(-1)
    value = (bb * ray).sum(-1) * 0.0
    value = torch.where(feasible, value, torch.full_like(value, math.inf))
    status = torch.where(feasible, int(Status.OPTIMAL), int(Status.INFEASIBLE))
    return Solution(
        x=bb.new_zeros((*batch, 0)),
        dual=ray,
        value=value,
        status=status,
        iterations=torch.zeros(batch, dtype=torch.long, device=bb.device),
        y=bb.new_zeros((*batch, 0)),
        eps=bb.new_zeros(batch),
    )


# --------------------------------------------------------------------------- public entry


@eager  # a torch.compile region runs it eagerly (docs/architecture.md)
def solve(
    A: torch.Tensor | SparseMatrix,
    b: torch.Tensor,
    c: torch.Tensor,
    *,
    eps: float | None = None,
    rho: float | None = None,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float | None = None,
    backward: str = "active",
    warm_start: Solution | None = None,
    compute_dtype: torch.dtype | None = None,
) -> Solution:
    """Solve ``min c.x s.t. A x <= b`` (x free) for a batch, differentiably (SPEC §3).

    Args:
        A: ``(*B, m, n)`` dense tensor or a :class:`~lpdsl.sparse.SparseMatrix` (the
            compiler's fixed pattern; its structure picks the linear algebra). A 2-D torch
            sparse tensor (COO, CSR, ...) is taken as the SparseMatrix of its nonzeros
            (gradients through COO and CSR).
        b: ``(*B, m)``. c: ``(*B, n)``. Leading batch dimensions broadcast.
        eps: starting penalty parameter on the scaled problem (default 0.1; for a sparse ``A``
            -- a SparseMatrix, a torch sparse tensor, or a dense ``A`` taken as sparse
            (docs/solver.md §6) -- whose rows each have at most one nonzero 1e-7, in float32
            arithmetic 1e-3); it
            is divided by 10 per stage (in float64 arithmetic by 100 after a stage of one
            step and its confirmation) until a certificate holds; at least 1e-11 (the
            continuation itself goes down to 1e-11 times ``max_i |b_i| / |A_i|`` where that
            is below 1: an LP whose rows all pass within distance 1 of the origin).
        rho: shift of the generalized Hessian (default 1e-9, in float32 arithmetic 1e-7;
            rows are scaled to unit norm).
        max_iter: Newton iterations per item over all stages (per run: a solve with
            columns rescaled whose answers do not hold in the LP's own units is run again
            unscaled, and ``iterations`` counts both runs; docs/solver.md §4).
        tol: certificate tolerance (relative; default 1e-9).
        backward: ``"active"`` differentiates the active-set solution (paper §3.2; value
            gradients are the envelope theorem's), ``"unroll"`` differentiates through Newton
            iterations at the final ``eps`` or 1e-8 (paper App. A.4; in float64 whatever the
            forward's arithmetic) with the same forward values (O(eps) off; items whose
            variables are in very different units, where it was far more, up to wrong signs,
            get the active mode's derivative, as do those at a degenerate vertex, whose
            violated rows are dependent; docs/solver.md §7). Double backward through
            ``value`` leaves out its own second derivative (a loss ``value**2`` gets ``2
            (dv)^2`` only): differentiate ``x`` or ``dual`` for second derivatives
            (docs/solver.md §7).
        warm_start: a previous :class:`Solution` of the same shapes: the active set of each
            item it solved is tried on the new data first (certified there, the item takes
            no Newton step), and its ``y`` and ``eps`` start the iterations (docs/solver.md
            §9).
        compute_dtype: the arithmetic of the iterations and the recovery: ``None`` (float64;
            float32 on MPS, which has no float64) or ``torch.float32`` (faster on GPUs; the
            default ``tol`` becomes 1e-5, ``rho`` 1e-7, and values agree to about 1e-5
            relative to ``|c| |x|``, see ``docs/solver.md`` §4: a cost whose entries span
            more than ~1e5 can leave the value far off, docs/solver.md §3, limit (i)).

    Returns:
        A :class:`Solution` in the dtype and on the device of the inputs (computed in
        ``compute_dtype``): the promotion of the floating dtypes of those given as tensors,
        float64 where none is (integer tensors, numpy arrays, lists), as a layer's values.
        Each input is read at its own precision (a layer's values are first cast to that
        dtype: numpy data beside a float16 tensor are rounded to float16 there, not here).

    Raises:
        DSLError: bad shapes, non-finite or overflowing data, bad option values, forward-mode
            differentiation, an optimum beyond the range of the inputs' dtype (float16).
    """
    A, b, c, batch, m, n, out_dtype, a_values, tops = _validate(
        A, b, c, backward, eps, rho, max_iter, tol, warm_start, compute_dtype
    )
    if isinstance(A, torch.Tensor) and A.is_inference() and not torch.is_inference_mode_enabled():
        # a dense A made under inference_mode is saved for b's and c's backward, which torch
        # refused with its raw "Inference tensors cannot be saved for backward" (a verifying
        # helper, 26th pass); a copy made here is an ordinary tensor
        A = a_values = A.clone()
    device = a_values.device
    if m == 0:
        # No constraints: one trivially satisfied row 0·x <= 1 lets the same machinery decide
        # (OPTIMAL at x = 0 when c = 0, else UNBOUNDED by the recession test).
        A0 = A.to_dense() if isinstance(A, SparseMatrix) else A
        A1 = torch.cat([A0, A0.new_zeros((*A0.shape[:-2], 1, n))], -2)
        b1 = torch.cat([b, b.new_ones((*b.shape[:-1], 1))], -1)
        options = {"eps": eps, "rho": rho, "max_iter": max_iter, "tol": tol}
        options["compute_dtype"] = compute_dtype
        if warm_start is not None:  # its dual has the caller's 0 rows: give it the added one
            pad = warm_start.dual.new_zeros((*warm_start.dual.shape[:-1], 1))
            warm_start = replace(warm_start, dual=torch.cat([warm_start.dual, pad], -1))
        sol = solve(A1, b1, c, backward=backward, warm_start=warm_start, **options)
        return replace(sol, dual=sol.dual[..., :0])
    if n == 0:
        return _without_variables(b, batch, m, out_dtype)
    work = compute_dtype or (torch.float32 if device.type == "mps" else torch.float64)
    _check_magnitude(tops, work)
    if rho is None:
        rho = DEFAULT_RHO if work == torch.float64 else DEFAULT_RHO_F32
    rho = float(rho)
    tol = default_tol(work) if tol is None else float(tol)
    N = math.prod(batch)

    op_iter = None  # the operator of the iterations, where it differs from op_live's matrix
    if isinstance(A, SparseMatrix):
        vals = A.values
        nnz = vals.shape[-1]  # (reshape(N, -1) cannot infer it for an empty batch)
        vals = vals.reshape(1, nnz) if vals.dim() == 1 else vals.expand(*batch, nnz).reshape(N, nnz)
        pattern = A.pattern if A.pattern.rows.device == device else A.pattern.to(device)
        op_live = SparseOperator(pattern, vals.to(work))
        small = (op_live.kind == "pairs" and nnz >= DENSE_MIN_DENSITY * m * n) or (
            op_live.kind == "arrow" and N * n**3 < ARROW_MIN_WORK
        )
        if small and N * m * n <= DENSE_MAX_ENTRIES:
            # small enough that dense BLAS beats gathers and scatters (fewer, larger ops)
            op_live = op_live.to_dense()
    else:
        lead = zip(A.stride()[:-2], A.shape[:-2], strict=True)
        if A.dim() > 2 and A.numel() and all(st == 0 or sz == 1 for st, sz in lead):
            A = A[(0,) * (A.dim() - 2)]  # an expanded (shared) A: keep one copy
        Af = A.reshape(1, m, n) if A.dim() == 2 else A.expand(*batch, m, n).reshape(N, m, n)
        nz = (Af != 0.0).any(0)
        if m * n > 4096 and int(nz.sum()) <= SPARSE_DENSITY * m * n:
            # An almost empty dense A (a metric model passed densely): iterate on its pattern.
            # Differentiate through the dense A where it needs a gradient — every entry of a
            # dense A has one, d value/dA = dual x^T, its zeros too (a live gather of the
            # nonzeros gave them 0) —, else keep the gathered nonzeros (no dense copy).
            rc = nz.nonzero()
            pattern = Pattern(rc[:, 0].contiguous(), rc[:, 1].contiguous(), (m, n))
            op_live = SparseOperator(pattern, Af[:, pattern.rows, pattern.cols].to(work))
            if Af.requires_grad and torch.is_grad_enabled():
                op_iter, op_live = op_live.detach(), DenseOperator(Af.to(work))
        else:
            op_live = DenseOperator(Af.to(work))
    if torch.finfo(work).tiny > torch.finfo(out_dtype).tiny:  # float64 data, float32 work
        _check_narrowing(A, b, c, batch, work)
    b_live, c_live = _flat(b, batch, N, m).to(work), _flat(c, batch, N, n).to(work)
    a_live = op_live.A if isinstance(op_live, DenseOperator) else op_live.values
    if op_iter is None:  # op_live's matrix, without its autograd history
        op_iter = op_live.detach() if may_track(a_live) else op_live
    op = op_iter
    with torch.no_grad():
        S = column_scales(op, c_live, work)
    # items whose variables are in other units (whichever run they end in): backward="unroll"
    # differentiates them by the active mode
    other_units = None if S is None else (S != 1.0).any(-1).expand(N)
    if eps is not None:
        eps0 = float(eps)
    elif op.separable is not None:  # every stage is one exact step: start where ε is exact
        eps0 = EPS_START_SEPARABLE if work == torch.float64 else EPS_START_SEPARABLE_F32
    else:
        eps0 = EPS_START

    y0 = eps_init = active0 = None
    if warm_start is not None:
        y0 = warm_start.y.reshape(N, n).to(device=device, dtype=work).detach()
        # the previous optimum's active set (rows with a positive multiplier), OPTIMAL items;
        # not tried where the rows differ (y and eps still start the iterations, as before
        # the try, which raised a raw reshape error there: a verifying helper)
        same_rows = tuple(warm_start.dual.shape) == (*batch, m)
        if same_rows and tuple(warm_start.status.shape) == batch:
            optimal0 = (warm_start.status == int(Status.OPTIMAL)).reshape(N, 1).to(device)
            active0 = (warm_start.dual.reshape(N, m).to(device) > 0.0) & optimal0
        e = warm_start.eps.reshape(N).to(device=device, dtype=work)
        # Resume at the stage where the previous solve stopped (exactness holds for every
        # smaller eps, so the continuation only goes on downwards if the data moved a lot).
        eps_init = torch.where(e > 0.0, e.clamp_max(eps0), torch.full_like(e, eps0))

    def newton(op_i: Any, c_i: torch.Tensor, y_i: torch.Tensor | None) -> _Result:
        with _without_autograd():
            res = _newton(
                op_i,
                detached(b_live),
                detached(c_i),
                eps0,
                rho,
                max_iter,
                tol,
                y_i,
                eps_init,
                active0,
            )
        return res.released()

    if S is not None:  # solve in x' = x / S (exact: powers of two), in the original units else
        scaled = newton(op.col_scaled(S), c_live * S, None if y0 is None else y0 / S)
        scaled = replace(scaled, x=_snapped(scaled.x, S))
        with _without_autograd():
            holds = _holds_unscaled(op, b_live.detach(), c_live.detach(), scaled, S, tol)
        stuck = scaled.status == int(Status.MAX_ITER)
        res = scaled
        if bool((stuck | ~holds).any()):  # chosen per item: a batch-mate never decides it
            plain = newton(op, c_live, y0)
            unscaled = ~holds | (stuck & (plain.status != int(Status.MAX_ITER)))
            res = _either(scaled, plain, unscaled)
            S = None if bool(unscaled.all()) else torch.where(unscaled[:, None], 1.0, S)
        if S is not None:
            op_live, op, c_live = op_live.col_scaled(S), op.col_scaled(S), c_live * S
    else:
        res = newton(op, c_live, y0)
    with torch.no_grad():  # (its tests are the same in x' = x / S: powers of two)
        # the Newton driver judged each OPTIMAL item against its own terms where it certified
        # it; a scaled run's point has been snapped since (_snapped), so it is judged again
        # (b_live and c_live as they are: the tests' outputs are booleans, made under no_grad)
        kept = res.status
        if S is not None:
            own = holds_in_terms(op, b_live, c_live, res.x, res.dual, tol)
            kept = torch.where((kept == int(Status.OPTIMAL)) & ~own, int(Status.MAX_ITER), kept)
        optimal = kept == int(Status.OPTIMAL)
        # every item OPTIMAL (the usual case): the masks by status below are all True or False
        every_optimal = bool(optimal.all())
        unbounded = None if every_optimal else kept == int(Status.UNBOUNDED)
        if unbounded is not None and bool(unbounded.any()):  # an UNBOUNDED item's point
            own = rows_in_terms(op, b_live, res.x, tol)[0]
            kept = torch.where(unbounded & ~own, int(Status.MAX_ITER), kept)
    if kept is not res.status:
        res = replace(res, status=kept)

    x, dual = res.x, res.dual
    a_live = op_live.A if isinstance(op_live, DenseOperator) else op_live.values  # (scaled)
    track = torch.is_grad_enabled() and any(t.requires_grad for t in (a_live, b_live, c_live))

    def active(x: torch.Tensor, dual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` and ``dual`` with the active-set derivative (paper §3.2, docs/solver.md §7)."""
        weights, solve_det = res.weights, res.solver
        with torch.no_grad():
            if solve_det is None:
                solve_det = op.hessian_solver(weights, RECOVERY_SHIFT)
            pinning = _pinning_weights(op, res.D, b_live, x, weights, solve_det, optimal, tol)
            if pinning is not None:
                weights = pinning
                solve_det = op.hessian_solver(weights, RECOVERY_SHIFT)
        live_a = a_live.requires_grad
        primal, dual_live = live_a or b_live.requires_grad, live_a or c_live.requires_grad
        xl, vl = refine_live(
            op_live, solve_det, weights, b_live, c_live, x, dual, primal=primal, dual=dual_live
        )
        # (a half refine_live leaves as it was is taken as it is)
        if primal:
            x = xl if every_optimal else torch.where(optimal[:, None], xl, x)
        if dual_live:  # (a new mask: the iterations' dual_is_ls is an inference tensor)
            dual = torch.where((optimal & res.dual_is_ls)[:, None], vl, dual)
        return x, dual

    if track and backward == "active":
        x, dual = active(x, dual)
    elif track and backward == "unroll":
        # in float64 where the device has it, whatever the forward's arithmetic: unrolled in
        # float32 at its eps of 1e-3 the gradients were 2e-3..0.17 relative off (dx/dc up to
        # 4 where it is 0; an F-beta loss's 9 % at n = 64, 5.7x at n = 1024: a reviewing
        # helper's probe, eighteenth pass)
        wide = wide_float(work, device)
        live = optimal & (res.eps > 0.0)
        e_max = UNROLL_EPS if wide == torch.float64 else UNROLL_EPS_F32
        e = torch.where(live, res.eps.clamp_max(e_max), torch.ones_like(res.eps))
        # (D and gamma were left as the iterations made them: _Result.released)
        parts = (res.D.clone(), b_live, c_live, res.y, e, res.gamma.clone())
        # a float32 forward's y is settled in float64 first: its rounding exceeded the tight
        # rows' eps-sized violations, and the taped steps wandered between active sets (d
        # dual/db 1.7e7 for 0 on a 38x14 max-flow LP: a reviewing helper, twentieth pass)
        settle = UNROLL_STEPS if res.y.dtype != wide else 0
        yu, du, held = unroll(
            op_live.to(wide), *(t.to(wide) for t in parts), rho, UNROLL_STEPS, settle
        )
        yu, du = yu.to(work), du.to(work)
        # more rows violated than variables: a degenerate vertex, whose dual is not unique and
        # whose penalty dual moves as O(1/eps) (d dual/db ~ 5.6e7 at three rows through a
        # point of the plane: the same helper); no gradient, as the active mode's penalty dual
        regular = live & ((du > 0.0).sum(-1) <= op.n)
        x_u = x + torch.where(live[:, None], yu - yu.detach(), torch.zeros_like(yu))
        dual_u = dual + torch.where(regular[:, None], du - du.detach(), torch.zeros_like(du))
        # steps that end off the active set their last Hessian weighted, or with a row of
        # positive dual unviolated, did not reach y_eps (derivatives along its null space
        # pick up 1/rho and 1/eps: d dual/db 8.6e8 for 0 with 15 of an assignment LP's 16
        # rows, after the settling steps), and dependent violated rows have no unique dual
        # (unroll's held): those items take the active mode's derivative
        by_active = live & (~held | ((dual > 0.0) & (du <= 0.0)).any(-1))
        if warm_start is not None:
            # items certified by a warm start's first try ran no Newton step on this data:
            # their y is the previous call's penalty iterate, whose unrolled steps gave
            # d(w.x)/db 0.40 off (a verifying helper's probe); the active mode's too
            by_active = by_active | ((res.iterations == 0) & optimal)
        if other_units is not None:
            # variables in other units (the column scaling's test): the penalty minimiser's
            # derivative is not x's there (d sum(x)/db 17x off or of the wrong sign, dual
            # derivatives 1e5..1e19 off on transport LPs in units 10^U(-5, 5): a verifying
            # helper's probe, eighteenth pass), so those items take the active mode's
            by_active = by_active | other_units
        if bool((by_active & live).any()):
            x_a, dual_a = active(x, dual)
            x_u = torch.where(by_active[:, None], x_a, x_u)
            dual_u = torch.where(by_active[:, None], dual_a, dual_u)
        x, dual = x_u, dual_u
    if track:
        # x and dual stay attached where their derivative is zero (x of an LP whose c alone
        # is live: a loss on x from learned costs raised torch's "does not require grad" in
        # backward, a reviewing helper's probe), as a torch function's outputs are
        live = next(t for t in (a_live, b_live, c_live) if t.requires_grad)
        zero = live.narrow(-1, 0, 0).sum()
        x = x if x.requires_grad else x + zero
        dual = dual if dual.requires_grad else dual + zero
    # an optimal dual's rounding below 0 is cut off in its value only: its derivative stays
    # (d dual / dc kept A^T d dual = -dc only with it; clamped, a row with a dual of -1e-19
    # lost its share: a reviewing helper's probe, fifteenth pass)
    dual_d = dual.detach()
    cut = dual_d.clamp_min(0.0) - dual_d
    dual = dual + (cut if every_optimal else torch.where(optimal[:, None], cut, 0.0))
    # the envelope theorem's gradient in either mode: exact at an optimum (SPEC §3), where
    # c.x through the unrolled x is O(eps) off (d value/dc must be x)
    value = envelope_value(op_live, b_live, c_live, x, dual)
    y = res.y
    if S is not None:
        x, y = x * S, y * S
    if not every_optimal:
        inf = torch.full_like(value, math.inf)
        value = torch.where(res.status == int(Status.INFEASIBLE), inf, value)
        value = torch.where(res.status == int(Status.UNBOUNDED), -inf, value)
    _check_fits(out_dtype, work, optimal, x=x, dual=dual, value=value)
    return Solution(
        x=x.to(out_dtype).reshape(*batch, n),
        dual=dual.to(out_dtype).reshape(*batch, m),
        value=value.to(out_dtype).reshape(batch),
        status=res.status.reshape(batch),
        iterations=res.iterations.reshape(batch),
        y=y.reshape(*batch, n),
        eps=res.eps.reshape(batch),
    )
