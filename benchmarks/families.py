"""The paper's LP families as ``(A, b, c)`` in the standard form ``min c.x s.t. A x <= b``.

Built directly (not through the DSL compiler) so the solver can be tested and benchmarked on
its own. Each builder returns dense tensors; :func:`to_sparse` gives the
:class:`~lpdsl.sparse.SparseMatrix` version on the model's fixed pattern.
"""

from __future__ import annotations

import torch

from lpdsl.sparse import Pattern, SparseMatrix


def fscore_lp(
    scores: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """F-score LP of paper §2.4 after Charnes–Cooper, as a minimisation.

    Variables ``(z_1..z_n, t)``; maximise ``(2y).z`` (the objective divided by the fixed
    denominator ``1^T y + b``, see eq. 5) subject to ``1^T z + b t = 1`` (two rows),
    ``z <= t``, ``phi(s) t <= z <= (1 + phi(s)) t``, ``0 <= z <= 1``, ``t >= 0`` with
    ``phi = tanh`` and ``b = 1^T y``. Batched over leading dimensions of ``scores``/``labels``.

    Returns:
        ``A (*B, 5n + 3, n + 1)``, ``b (*B, 5n + 3)``, ``c (*B, n + 1)``.
    """
    return _fscore_from_phi(torch.tanh(scores), labels)


def _fscore_from_phi(phi: torch.Tensor, labels: torch.Tensor, rhs_only: bool = False):
    phi, labels = torch.broadcast_tensors(phi, labels)
    *batch, n = phi.shape
    dt, dev = phi.dtype, phi.device
    ones = torch.ones(*batch, n, dtype=dt, device=dev)
    eye = torch.eye(n, dtype=dt, device=dev).expand(*batch, n, n)
    zero_col = torch.zeros(*batch, n, 1, dtype=dt, device=dev)
    ysum = labels.sum(-1, keepdim=True)

    def block(zpart: torch.Tensor, tpart: torch.Tensor) -> torch.Tensor:
        return torch.cat([zpart, tpart], -1)

    A = None
    if not rhs_only:
        rows = [
            block(ones[..., None, :], ysum[..., None]),  # 1^T z + b t <= 1
            block(-ones[..., None, :], -ysum[..., None]),  # -(1^T z + b t) <= -1
            block(eye, -torch.ones_like(zero_col)),  # z - t <= 0
            block(-eye, phi[..., None]),  # phi t - z <= 0
            block(eye, -(1 + phi)[..., None]),  # z - (1 + phi) t <= 0
            block(-eye, zero_col),  # -z <= 0
            block(eye, zero_col),  # z <= 1
            block(
                torch.zeros(*batch, 1, n, dtype=dt, device=dev),
                -torch.ones(*batch, 1, 1, dtype=dt, device=dev),
            ),
        ]
        A = torch.cat(rows, -2)
    zeros_n = torch.zeros(*batch, n, dtype=dt, device=dev)
    b = torch.cat(
        [
            torch.ones(*batch, 1, dtype=dt, device=dev),
            -torch.ones(*batch, 1, dtype=dt, device=dev),
            zeros_n,
            zeros_n,
            zeros_n,
            zeros_n,
            ones,
            torch.zeros(*batch, 1, dtype=dt, device=dev),
        ],
        -1,
    )
    c = torch.cat([-2 * labels, torch.zeros(*batch, 1, dtype=dt, device=dev)], -1)
    return A, b, c


def auc_lp(
    pos_scores: torch.Tensor, neg_scores: torch.Tensor, margin: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pairwise AUC LP of paper eq. (2): ``min sum z_ij s.t. f_i - f_j >= margin - z_ij, z >= 0``.

    Variables ``z`` over the ``p * q`` positive–negative pairs (row-major). Rows:
    ``-z_ij <= f_i - f_j - margin`` and ``-z_ij <= 0``.

    Returns:
        ``A (*B, 2pq, pq)``, ``b (*B, 2pq)``, ``c (*B, pq)``.
    """
    *batch, p = pos_scores.shape
    q = neg_scores.shape[-1]
    k = p * q
    dt, dev = pos_scores.dtype, pos_scores.device
    gap = (pos_scores[..., :, None] - neg_scores[..., None, :]).reshape(*batch, k)
    eye = torch.eye(k, dtype=dt, device=dev)
    A = torch.cat([-eye, -eye], 0).expand(*batch, 2 * k, k)
    b = torch.cat([gap - margin, torch.zeros_like(gap)], -1)
    c = torch.ones(*batch, k, dtype=dt, device=dev)
    return A, b, c


def random_lp(
    m: int,
    n: int,
    batch: tuple[int, ...] = (),
    *,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    dual_density: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random feasible, bounded LP: ``A`` normal, ``b = A x0 + slack``, ``c = -A^T v0``.

    ``v0 >= 0`` is nonzero on a random ``dual_density`` fraction of the rows, so the dual is
    feasible and the primal (feasible at ``x0``) has a finite optimum.
    """
    g = generator
    A = torch.randn(*batch, m, n, dtype=dtype, generator=g)
    x0 = torch.randn(*batch, n, 1, dtype=dtype, generator=g)
    b = (A @ x0).squeeze(-1) + torch.rand(*batch, m, dtype=dtype, generator=g)
    keep = torch.rand(*batch, m, dtype=dtype, generator=g) < dual_density
    v0 = torch.rand(*batch, m, dtype=dtype, generator=g) * keep
    c = -(A.transpose(-1, -2) @ v0.unsqueeze(-1)).squeeze(-1)
    return A, b, c


def to_sparse(A: torch.Tensor, pattern: Pattern | None = None) -> SparseMatrix:
    """The :class:`SparseMatrix` of ``A`` on ``pattern`` (default: union of nonzeros).

    For the F-score model pass ``fscore_pattern(n)`` so that entries that happen to be zero
    for some scores (``phi = 0``) stay in the pattern, as the compiler would keep them.
    """
    return SparseMatrix.from_dense(A, pattern)


def fscore_sparse(
    scores: torch.Tensor, labels: torch.Tensor, pattern: Pattern
) -> tuple[SparseMatrix, torch.Tensor, torch.Tensor]:
    """:func:`fscore_lp` with ``A`` built directly on ``pattern`` (``fscore_pattern(n)``).

    Every coefficient is ``alpha + beta * phi_i + gamma * 1^T y`` (``i`` the sample of the row),
    as a compiler would emit it: linear in the nonzeros, no dense ``(m, n)`` intermediate.
    """
    n = scores.shape[-1]
    alpha, beta, gamma, sample = _fscore_coefficients(pattern, n)
    _, b, c = _fscore_rhs_cost(labels)
    phi = torch.tanh(scores)
    ysum = labels.sum(-1, keepdim=True)
    values = (
        alpha.to(phi.dtype) + beta.to(phi.dtype) * phi[..., sample] + gamma.to(phi.dtype) * ysum
    )
    return SparseMatrix(pattern, values), b.expand(*values.shape[:-1], -1), c


_COEFF_CACHE: dict[tuple[int, int], tuple] = {}


def _fscore_coefficients(pattern: Pattern, n: int):
    key = (id(pattern), n)
    if key not in _COEFF_CACHE:
        r, k = pattern.rows, pattern.cols

        def probe(phi_val: float, y_val: float) -> torch.Tensor:
            A, _, _ = _fscore_from_phi(
                torch.full((n,), phi_val, dtype=torch.float64),
                torch.full((n,), y_val / n, dtype=torch.float64),
            )
            return A[r, k]

        alpha = probe(0.0, 0.0)
        beta = probe(1.0, 0.0) - alpha
        gamma = probe(0.0, 1.0) - alpha
        sample = ((r - 2) % n).clamp(0, n - 1)
        _COEFF_CACHE[key] = (pattern, (alpha, beta, gamma, sample))
    return _COEFF_CACHE[key][1]


def _fscore_rhs_cost(labels: torch.Tensor):
    return _fscore_from_phi(torch.zeros_like(labels), labels, rhs_only=True)


def fscore_pattern(n: int) -> Pattern:
    """The fixed pattern of :func:`fscore_lp`'s ``A`` for ``n`` samples (all coefficients)."""
    A, _, _ = fscore_lp(torch.full((n,), 0.3), torch.ones(n))
    nz = (A != 0).nonzero()
    return Pattern(nz[:, 0].contiguous(), nz[:, 1].contiguous(), tuple(A.shape))


def netlib_lp(path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """A netlib problem (``/work/shared/data/netlib/*.npz``) as ``min c.x s.t. A x <= b``.

    Equalities become two opposite rows; bounds become rows (an empty ``bounds`` means
    ``x >= 0``; NaN means no bound). Returns ``A, b, c`` (float64) and the reference ``obj``.
    """
    import numpy as np

    d = np.load(path, allow_pickle=True)
    c = np.asarray(d["c"], dtype=float)
    n = c.shape[0]
    blocks_a, blocks_b = [], []

    def add(a, bb):
        a = np.asarray(a, dtype=float).reshape(-1, n)
        if a.shape[0]:
            blocks_a.append(a)
            blocks_b.append(np.asarray(bb, dtype=float).reshape(-1))

    add(d["A_ub"], d["b_ub"])
    add(d["A_eq"], d["b_eq"])
    add(-np.asarray(d["A_eq"], dtype=float), -np.asarray(d["b_eq"], dtype=float))
    raw = np.asarray(d["bounds"], dtype=object).reshape(-1, 2) if d["bounds"].size else None
    bounds = (
        np.empty(0)
        if raw is None
        else np.array([[np.nan if v is None else float(v) for v in row] for row in raw])
    )
    eye = np.eye(n)
    if bounds.size == 0:
        add(-eye, np.zeros(n))
    else:
        lo, hi = bounds[:, 0], bounds[:, 1]
        has_lo, has_hi = ~np.isnan(lo), ~np.isnan(hi)
        add(-eye[has_lo], -lo[has_lo])
        add(eye[has_hi], hi[has_hi])
    A = torch.from_numpy(np.concatenate(blocks_a))
    b = torch.from_numpy(np.concatenate(blocks_b))
    return A, b, torch.from_numpy(c), float(d["obj"]) if "obj" in d else float("nan")
