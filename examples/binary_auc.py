"""Binary AUC on imbalanced image tasks (paper §4, Table 1 protocol).

Half of the classes are positive, and negatives are dropped from the training split until
positives make up 91 / 83 / 71 / 50 % of it (``lpdsl.data.binary_imbalance``); Animal-MNIST
is cat (positive) vs dog, the stand-in for the paper's Cat&Dog. For every data set, ratio and
seed, one small CNN per loss is trained from the same initial weights on the same minibatches
(``lpdsl.training.train_one``), and the test ROC-AUC is reported as mean ± std over seeds:

* ``bce``: cross-entropy (Adam);
* ``auc``: ``lpdsl.metrics.AUCLoss`` (the LP of paper eq. (2), Adam);
* ``aucm``: LibAUC's AUC-margin loss on sigmoid outputs with its PESG optimiser (the
  successor of the paper's PPD-SG baseline); needs ``libauc`` importable (install with
  ``pip install --no-deps --target .venv/extra libauc`` and run with
  ``PYTHONPATH=.venv/extra``); skipped with a note if it is not.

Defaults are sized for a 2-core CPU (10 min wall time on one shared with other jobs, 72 runs;
see docs/results.md): 2,000 training and 2,000 test
examples, 3 epochs. ``--full`` uses the whole splits and 20 epochs (for a GPU).

    python examples/binary_auc.py                     # both data sets, 4 ratios, 3 seeds
    python examples/binary_auc.py --full --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable

import numpy as np
import torch
from _common import (
    add_common_flags,
    add_size_flags,
    apply_size_presets,
    errorbar_over_seeds,
    fill_grid,
    grid_flag,
    int_list,
    load_run,
    markdown_table,
    mean_std,
    pyplot,
    run_main,
    save_figure,
    setup,
    write_outputs,
)
from torch import nn

from lpdsl.training import train_one

RATIOS = (0.91, 0.83, 0.71, 0.50)


class SigmoidAUCM(nn.Module):
    """LibAUC's ``AUCMLoss`` on ``sigmoid(scores)``, with the metric losses' calling convention.

    LibAUC's AUC-margin loss expects scores in [0, 1] (its examples apply a sigmoid) and labels
    of shape ``(n, 1)``; its auxiliary variables ``a``, ``b``, ``alpha`` live in the loss and
    are updated by the PESG optimiser.
    """

    def __init__(self, device: str, margin: float = 1.0) -> None:
        super().__init__()
        from libauc.losses import AUCMLoss

        self.aucm = AUCMLoss(margin=margin, device=torch.device(device))

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The AUC-margin loss of the batch."""
        return self.aucm(torch.sigmoid(scores)[:, None], labels.float()[:, None])


def pesg_factory(lr: float, device: str) -> Callable[[nn.Module, nn.Module], torch.optim.Optimizer]:
    """PESG with LibAUC's recommended settings (momentum 0.9, epoch decay 3e-3, wd 1e-4)."""
    from libauc.optimizers import PESG

    def make(model: nn.Module, loss: nn.Module) -> torch.optim.Optimizer:
        return PESG(
            model.parameters(),
            loss_fn=loss.aucm,
            lr=lr,
            momentum=0.9,
            epoch_decay=3e-3,
            weight_decay=1e-4,
            device=torch.device(device),
            verbose=False,
        )

    return make


def libauc_available() -> str:
    """'' if LibAUC's AUCMLoss and PESG import here, else why not."""
    if importlib.util.find_spec("libauc") is None:
        return (
            "libauc is not importable (pip install --no-deps --target .venv/extra libauc, "
            "then run with PYTHONPATH=.venv/extra)"
        )
    try:
        from libauc.losses import AUCMLoss  # noqa: F401
        from libauc.optimizers import PESG  # noqa: F401
    except Exception as err:  # any import failure means: skip the baseline, say why
        return f"libauc does not import: {type(err).__name__}: {err}"
    return ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    grid_flag(p, "--datasets", "fashion-mnist,animal-mnist", "fashion-mnist")
    grid_flag(p, "--ratios", ",".join(f"{r:g}" for r in RATIOS), "0.91")
    grid_flag(p, "--seeds", "0,1,2", "0")
    p.add_argument("--losses", default="bce,auc,aucm", help="of bce, auc, aucm")
    add_size_flags(p, epochs=3, train_size=2000)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's rate for bce and auc")
    p.add_argument("--pesg-lr", type=float, default=0.1, help="PESG's rate for aucm")
    add_common_flags(p, "binary_auc")
    args = p.parse_args(argv)
    unknown = sorted(set(args.losses.split(",")) - {"bce", "auc", "aucm"})
    if unknown:  # before any training, not after the first losses' runs
        p.error(f"--losses: unknown {', '.join(unknown)}; choose from bce, auc, aucm")
    apply_size_presets(args)
    fill_grid(args)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the grid, print and write the table, plot AUC against the positive ratio."""
    args = parse_args(argv)
    out = setup(args, "binary_auc")
    datasets = args.datasets.split(",")
    ratios = [float(r) for r in args.ratios.split(",")]
    seeds = int_list(args.seeds, "--seeds")
    losses = args.losses.split(",")
    notes = []
    if "aucm" in losses:
        why = libauc_available()
        if why:
            notes.append(f"aucm skipped: {why}")
            print(notes[-1])
            losses.remove("aucm")

    runs = []
    for name in datasets:
        for ratio in ratios:
            for seed in seeds:
                data, config = load_run(args, name, seed, positive_ratio=ratio)
                for loss_name in losses:
                    kwargs = {}
                    if loss_name == "aucm":
                        kwargs = {
                            "loss": SigmoidAUCM(args.device),
                            "optimizer": pesg_factory(args.pesg_lr, args.device),
                        }
                    res = train_one(data, loss_name, config, **kwargs)
                    runs.append(
                        {
                            "dataset": name,
                            "ratio": ratio,
                            "seed": seed,
                            "loss": loss_name,
                            "n_train": len(data.y_train),
                            "n_test": len(data.y_test),
                            "roc_auc": res.metrics["roc_auc"],
                            "ms_per_step": 1000 * res.seconds_per_step,
                            "history": res.history,
                        }
                    )
                    print(
                        f"{name} ratio {ratio:g} seed {seed} {loss_name:>5}: "
                        f"AUC {res.metrics['roc_auc']:.4f} ({len(data.y_train)} train, "
                        f"{1000 * res.seconds_per_step:.0f} ms/step)",
                        flush=True,
                    )

    def cell(name: str, ratio: float, loss: str, key: str = "roc_auc") -> list[float]:
        return [
            r[key]
            for r in runs
            if r["dataset"] == name and r["ratio"] == ratio and r["loss"] == loss
        ]

    header = ["loss"] + [f"{n} {r:.0%}" for n in datasets for r in ratios] + ["ms/step"]
    rows = []
    for loss in losses:
        ms = [r["ms_per_step"] for r in runs if r["loss"] == loss]
        rows.append(
            [loss]
            + [mean_std(cell(n, r, loss)) for n in datasets for r in ratios]
            + [f"{np.median(ms):.0f}"]
        )
    table = (
        f"Test ROC-AUC (%), mean ± std over seeds {seeds}; columns: data set and positive "
        f"ratio of the training split; ms/step: median training time per step.\n\n"
        + markdown_table(header, rows)
    )
    if notes:
        table += "\n\n" + "\n".join(f"Note: {n}" for n in notes)
    write_outputs(out, table, {"args": vars(args) | {"out": str(out)}, "runs": runs})
    plot(out, runs, datasets, ratios, losses)


def plot(out, runs: list[dict], datasets: list[str], ratios: list[float], losses: list[str]):
    """``auc_vs_ratio.png``: test AUC against the positive ratio, one panel per data set."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        for loss in losses:
            vals = [
                [r["roc_auc"] for r in runs if (r["dataset"], r["ratio"], r["loss"]) == key]
                for key in ((name, q, loss) for q in ratios)
            ]
            errorbar_over_seeds(ax, [100 * q for q in ratios], vals, loss)
        ax.set_title(name)
        ax.set_xlabel("positive ratio of the training split (%)")
        ax.set_ylabel("test ROC-AUC")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, out / "auc_vs_ratio.png")


if __name__ == "__main__":
    run_main(main)
