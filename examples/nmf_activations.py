"""Separable NMF of CNN activations as an LP (paper App. A.3.1, Fig. 2).

A small CNN (``lpdsl.training.SmallCNN``) is trained briefly on Fashion-MNIST (3 class groups,
cross-entropy). For a few test images the activations after the first conv block, ``(c, h,
w)`` = ``(16, 14, 14)``, are reshaped to ``V`` ``(c, h·w)``; channels that are all zero are
dropped and the rows normalised to sum 1, as ``lpdsl.metrics.NMF`` requires. Then, for
``k = 1, 2``:

1. ``lpdsl.metrics.NMF(k)`` solves LP (17) of the paper, ``C V = V`` exactly. Real
   activations are almost never exactly separable, and then LP (17) is infeasible; the script
   records that.
2. The robust variant of Recht et al. (2012), declared here in lpdsl's DSL and solved by an
   ``lpdsl.LPLayer``, allows an error ``tau``: ``minimize tau + eps·p·diag(C)`` subject to
   ``|C V - V| <= tau`` (elementwise), ``tr(C) = k``, ``C_jj <= 1``, ``C_ij <= C_jj``,
   ``C >= 0``. Its ``k`` largest diagonal entries are the anchors: ``W = V[anchors]``,
   ``F = C[:, anchors]``.
3. Check: the separable projection of ``V`` (anchor rows kept, every other row replaced by
   its normalised row of ``F W``) is exactly separable, so ``NMF(k)`` must solve it; the table
   says whether its anchors equal the robust LP's (or that the solver did not finish).

Each row ``W_j`` reshaped to ``h × w`` is a heat map; ``nmf_heatmaps.png`` shows the images
(top row) and the heat maps for ``k = 1`` and ``k = 2`` (one colour per factor) over them.

    python examples/nmf_activations.py
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch
from _common import (
    add_common_flags,
    markdown_table,
    pyplot,
    run_main,
    save_figure,
    setup,
    write_outputs,
)
from torch import nn

import lpdsl as lp
from lpdsl.data import load_dataset
from lpdsl.errors import SolverError
from lpdsl.metrics import NMF
from lpdsl.training import SmallCNN, stratified_batches


def robust_nmf_layer(s: int, w: int, rank: int, eps: float = 1e-3) -> lp.LPLayer:
    """The LP ``min tau + eps p·diag(C)`` s.t. ``|CV - V| <= tau`` and LP (17)'s other rows.

    Always feasible (``C`` = ``rank`` ones on the diagonal is), unlike LP (17) itself.

    Args:
        s: Rows of ``V`` (channels).
        w: Columns of ``V`` (pixels).
        rank: ``tr(C)``, the number of anchors.
        eps: Weight of the anchor-choosing objective ``p·diag(C)`` (``p_j = 1 + j / s``).

    Returns:
        A layer taking ``V`` and returning ``(C, tau)``.
    """
    V = lp.Parameter((s, w), name="V", nonneg=True)
    C = lp.Variable((s, s), name="C", nonneg=True)
    tau = lp.Variable(name="tau")
    idx = np.arange(s)
    diag = C[idx, idx]
    p = 1.0 + np.arange(s) / s
    problem = lp.Problem(
        lp.Minimize(tau + eps * (p @ diag)),
        [
            tau >= C @ V - V,
            tau >= V - C @ V,
            diag.sum() == rank,
            diag <= 1,
            diag.reshape((1, s)) >= C,
        ],
    )
    return lp.LPLayer(problem, parameters=[V], variables=[C, tau], layout="sparse")


def train_cnn(args: argparse.Namespace) -> tuple[nn.Module, np.ndarray]:
    """A briefly trained SmallCNN and the test images (standardized, ``(n, 1, 28, 28)``)."""
    data = load_dataset(
        "fashion-mnist", task="multiclass", drop_rate=0.0, train_size=args.train_size, seed=0
    )
    torch.manual_seed(0)
    model = SmallCNN(1, data.n_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    for _ in range(args.epochs):
        for batch in stratified_batches(data.y_train, 64, rng):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data.x_test


def activations(model: nn.Module, images: np.ndarray, pool: int) -> torch.Tensor:
    """The first conv block's output ``(n, c, h, w)`` (conv, ReLU, max-pool), optionally
    average-pooled by ``pool`` more."""
    with torch.no_grad():
        a = model[2](model[1](model[0](torch.as_tensor(images))))
        if pool > 1:
            a = nn.functional.avg_pool2d(a, pool)
    return a.double()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="0,1,2", help="indices into the test split")
    p.add_argument("--ranks", default="1,2")
    p.add_argument("--pool", type=int, default=1, help="extra average pooling of the maps")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-size", type=int, default=3000)
    add_common_flags(p, "nmf_activations")
    args = p.parse_args(argv)
    if args.full:
        args.train_size, args.epochs = None, 5
    if args.smoke:
        args.images, args.ranks, args.pool, args.train_size = "0", "1", 7, 200
    return args


def main(argv: list[str] | None = None) -> None:
    """Factor the activations of each image for each rank; write the table and heat maps."""
    args = parse_args(argv)
    out = setup(args, "nmf_activations")
    model, x_test = train_cnn(args)
    picks = [int(i) for i in args.images.split(",")]
    ranks = [int(k) for k in args.ranks.split(",")]
    acts = activations(model, x_test[picks], args.pool)
    _, c, h, w = acts.shape
    rows, runs, maps = [], [], {}
    for i, a in zip(picks, acts, strict=True):
        V = a.reshape(c, h * w)
        V = V[V.sum(1) > 0]
        V = V / V.sum(1, keepdim=True)
        s = V.shape[0]
        for k in ranks:
            t0 = time.perf_counter()
            try:
                NMF(k)(V)
                exact = "solved"
            except SolverError:
                exact = "infeasible"
            t_exact = time.perf_counter() - t0
            t0 = time.perf_counter()
            C, tau = robust_nmf_layer(s, h * w, k)(V)
            t_robust = time.perf_counter() - t0
            anchors = torch.topk(C.diagonal(), k).indices.sort().values
            F, W = C[:, anchors], V[anchors]
            rel = float((F @ W - V).norm() / V.norm())
            # the separable projection: anchors as they are, other rows from F W, normalised
            P = F @ W
            P[anchors] = W
            P = P / P.sum(1, keepdim=True)
            try:
                _, W2 = NMF(k, max_iter=2000)(P)
                agree = "yes" if torch.allclose(W2, W) else "no"
            except SolverError as err:  # a solver failure on a feasible LP: report it
                status = re.search(r"\(([A-Z_]+):", str(err))
                agree = f"not solved ({status.group(1) if status else 'error'})"
            maps[(i, k)] = W.reshape(k, h, w).numpy()
            runs.append(
                {
                    "image": i,
                    "rank": k,
                    "s": s,
                    "w": h * w,
                    "exact_lp17": exact,
                    "tau": float(tau),
                    "relative_error": rel,
                    "anchors": anchors.tolist(),
                    "projection_anchors_agree": agree,
                    "seconds_exact": t_exact,
                    "seconds_robust": t_robust,
                }
            )
            rows.append(
                [
                    i,
                    k,
                    f"{s} × {h * w}",
                    exact,
                    f"{float(tau):.4f}",
                    f"{rel:.3f}",
                    ", ".join(str(j) for j in anchors.tolist()),
                    agree,
                    f"{t_exact:.1f} / {t_robust:.1f}",
                ]
            )
            print(f"image {i} rank {k}: {rows[-1]}", flush=True)
    header = [
        "image",
        "k",
        "V (c × h·w)",
        "NMF(k), LP (17)",
        "robust tau",
        "‖FW − V‖/‖V‖",
        "anchor channels",
        "NMF(k) on projection agrees",
        "s (exact / robust)",
    ]
    table = (
        "Separable NMF of first-block activations of a SmallCNN (Fashion-MNIST test images).\n\n"
        + markdown_table(header, rows)
    )
    write_outputs(out, table, {"args": vars(args) | {"out": str(out)}, "runs": runs})
    plot(out, x_test, picks, ranks, maps)


def plot(out, x_test: np.ndarray, picks: list[int], ranks: list[int], maps: dict) -> None:
    """``nmf_heatmaps.png``: images on top, one row of heat maps per rank (factors coloured)."""
    plt = pyplot()
    cmaps = ["Reds", "Blues", "Greens", "Purples"]
    fig, axes = plt.subplots(
        1 + len(ranks),
        len(picks),
        figsize=(2.2 * len(picks), 2.2 * (1 + len(ranks))),
        squeeze=False,
    )
    for col, i in enumerate(picks):
        img = x_test[i, 0]
        axes[0][col].imshow(img, cmap="gray")
        axes[0][col].set_title(f"test image {i}", fontsize=9)
        for row, k in enumerate(ranks, start=1):
            ax = axes[row][col]
            ax.imshow(img, cmap="gray", alpha=0.5)
            for j, m in enumerate(maps[(i, k)]):
                up = np.kron(m, np.ones((img.shape[0] // m.shape[0], img.shape[1] // m.shape[1])))
                ax.imshow(
                    np.ma.masked_less(up / up.max(), 0.2),
                    cmap=cmaps[j % 4],
                    alpha=0.6,
                    vmin=0,
                    vmax=1,
                )
            ax.set_title(f"k = {k}", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    save_figure(fig, out / "nmf_heatmaps.png")


if __name__ == "__main__":
    run_main(main)
