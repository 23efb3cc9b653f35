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
    int_list,
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
from lpdsl.errors import DSLError, SolverError
from lpdsl.metrics import NMF
from lpdsl.training import SmallCNN, TrainConfig, stratified_batches


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


def train_cnn(
    args: argparse.Namespace, picks: list[int], ranks: list[int]
) -> tuple[nn.Module, np.ndarray]:
    """A briefly trained SmallCNN on ``args.device`` and the test images (standardized, ``(n,
    1, 28, 28)``); the images picked and the ranks are checked first, before any training (an
    image index beyond the test split was a raw IndexError after training: a docs-walking
    helper)."""
    data = load_dataset(
        "fashion-mnist", task="multiclass", drop_rate=0.0, train_size=args.train_size, seed=0
    )
    torch.manual_seed(0)
    model = SmallCNN(1, data.n_classes)
    n_test, channels = len(data.x_test), model[0].out_channels
    bad = [i for i in picks if not 0 <= i < n_test]
    if bad:
        raise SystemExit(f"--images: {bad} outside the test split's indices 0..{n_test - 1}")
    if any(not 1 <= k <= channels for k in ranks):
        raise SystemExit(f"--ranks: each must lie in 1..{channels} (the channels), got {ranks}")
    side = min(activations(model, data.x_test[:1], 1).shape[-2:])  # what --pool divides
    if args.pool > side:
        raise SystemExit(f"--pool must be at most {side} (the maps are {side} x {side})")
    model = model.to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(data.x_train, device=args.device)
    y = torch.as_tensor(data.y_train, device=args.device)
    for _ in range(args.epochs):
        for batch in stratified_batches(data.y_train, 64, rng):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval(), data.x_test


def activations(model: nn.Module, images: np.ndarray, pool: int) -> torch.Tensor:
    """The first conv block's output ``(n, c, h, w)`` (conv, ReLU, max-pool), optionally
    average-pooled by ``pool`` more, in float64 on the model's device (on the CPU for MPS,
    which has no float64): the LPs run where their data is."""
    device = next(model.parameters()).device
    with torch.no_grad():
        a = model[2](model[1](model[0](torch.as_tensor(images, device=device))))
        if pool > 1:
            a = nn.functional.avg_pool2d(a, pool)
    return (a.cpu() if device.type == "mps" else a).double()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # presets fill only the flags not given (--smoke --ranks 2 ran rank 1: a docs-walking
    # helper), as the classifier experiments' do (_common.apply_size_presets)
    p.add_argument("--images", default=None, help="indices into the test split (default 0,1,2)")
    p.add_argument("--ranks", default=None, help="comma-separated (default 1,2)")
    p.add_argument("--pool", type=int, default=None, help="extra average pooling (default 1)")
    p.add_argument("--epochs", type=int, default=None, help="(default 1; --full 5)")
    p.add_argument("--train-size", type=int, default=None, help="0: all (default 3000)")
    add_common_flags(p, "nmf_activations")
    args = p.parse_args(argv)
    preset = {"images": "0,1,2", "ranks": "1,2", "pool": 1, "epochs": 1, "train_size": 3000}
    if args.full:
        preset.update(train_size=0, epochs=5)
    if args.smoke:
        preset.update(images="0", ranks="1", pool=7, train_size=200)
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.train_size = args.train_size or None
    try:  # the device and the epochs, before any data is loaded (--device was ignored)
        TrainConfig(epochs=args.epochs, device=args.device)
    except DSLError as err:
        p.error(str(err))
    if args.pool < 1:
        p.error(f"--pool must be >= 1, got {args.pool}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Factor the activations of each image for each rank; write the table and heat maps."""
    args = parse_args(argv)
    out = setup(args, "nmf_activations")
    picks = int_list(args.images, "--images")
    ranks = int_list(args.ranks, "--ranks")
    model, x_test = train_cnn(args, picks, ranks)
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
            empty = (P.sum(1) <= 0.0).nonzero().squeeze(1).tolist()
            if empty:  # channels with no weight on the anchors (0/0 crashed the run)
                agree = f"no projection (channels {empty} have no weight on the anchors)"
            else:
                try:
                    _, W2 = NMF(k, max_iter=2000)(P / P.sum(1, keepdim=True))
                    agree = "yes" if torch.allclose(W2, W) else "no"
                except SolverError as err:  # a solver failure on a feasible LP: report it
                    status = re.search(r"\(([A-Z_]+):", str(err))
                    agree = f"not solved ({status.group(1) if status else 'error'})"
            maps[(i, k)] = W.reshape(k, h, w).cpu().numpy()
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
