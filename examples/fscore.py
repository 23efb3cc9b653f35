"""F-score training (paper §4, Table 4): lpdsl's F-β LP vs cross-entropy vs cvxpylayers.

The tasks are those of ``binary_auc.py`` (Table 1 protocol, default positive ratio 91 %). For
every data set and seed, one small CNN per loss is trained from the same initial weights on
the same minibatches (``lpdsl.training.train_one``); the table gives the test F1 of the
predictions ``logit > 0`` and the training time per step:

* ``bce``: cross-entropy;
* ``fbeta``: ``lpdsl.metrics.FBetaLoss`` (the linear-fractional LP, Charnes–Cooper, lpdsl's
  Newton solver);
* ``fbeta-cvxpy``: the same LP written in CVXPY and solved by a
  :class:`cvxpylayers.torch.CvxpyLayer` (the paper's "CVXPY-SCS" row; ``--cvxpy-solver``
  picks the solver, default SCS), with the same estimate ``FBetaLoss.metric_at(ŷ, y)``;
  needs the ``peers`` extra (``pip install -e ".[peers]"``, in ``.[dev]``), skipped with a
  note without it.

Defaults are sized for a shared 2-core CPU: 1,000 training and 2,000 test examples, 2 epochs
(cvxpylayers is the slow one). ``--full`` uses the whole splits and 20 epochs.

    python examples/fscore.py
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from typing import Any

import numpy as np
import torch
from _common import (
    add_common_flags,
    add_size_flags,
    apply_size_presets,
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

from lpdsl.errors import LPError
from lpdsl.metrics import FBetaLoss
from lpdsl.training import BCELoss, train_one


class CvxpyFBetaLoss(nn.Module):
    """``1 - F_beta`` by the LP of :class:`lpdsl.metrics.FBetaLoss`, solved by cvxpylayers.

    The linear-fractional program ``max F_beta(ŷ)`` s.t. ``phi <= ŷ <= 1 + phi``,
    ``0 <= ŷ <= 1`` (``phi = tanh(scores)``) after Charnes–Cooper (``w = t ŷ``,
    ``t = 1 / den``): since ``den = TP + FP + beta² n_pos = 1·ŷ + beta² n_pos``::

        maximize   (1 + beta²) y·w
        subject to 1·w + beta² n_pos t = 1,  phi t <= w <= (1 + phi) t,  0 <= w <= t

    with parameters ``phi``, ``y`` and ``n_pos`` (DPP). One layer per batch size.

    Args:
        beta: F-β's beta.
        solver: cvxpylayers' ``solve_method`` (``"SCS"``, ``"Clarabel"``, ...).
    """

    def __init__(self, beta: float = 1.0, solver: str = "SCS") -> None:
        super().__init__()
        self.beta = beta
        self.solver = solver
        self.metric = FBetaLoss(beta)  # only for metric_at: the same estimate as lpdsl's
        self._layers: dict[int, Any] = {}

    def _layer(self, n: int) -> Any:
        if n not in self._layers:
            import cvxpy as cp
            from cvxpylayers.torch import CvxpyLayer

            b2 = self.beta**2
            phi, y, n_pos = cp.Parameter(n), cp.Parameter(n), cp.Parameter(nonneg=True)
            w, t = cp.Variable(n), cp.Variable(nonneg=True)
            cons = [
                cp.sum(w) + b2 * n_pos * t == 1,
                cp.multiply(phi, t) <= w,
                w <= cp.multiply(1 + phi, t),
                w >= 0,
                w <= t,
            ]
            prob = cp.Problem(cp.Maximize((1 + b2) * (y @ w)), cons)
            self._layers[n] = CvxpyLayer(prob, parameters=[phi, y, n_pos], variables=[w, t])
        return self._layers[n]

    def forward(self, scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``1 - `` the LP estimate of F-β on the batch (differentiable through cvxpylayers)."""
        y = labels.double()
        phi = torch.tanh(scores.double())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, t = self._layer(len(y))(phi, y, y.sum(), solver_args={"solve_method": self.solver})
        yhat = (w / t).clamp(0.0, 1.0)
        return (1 - self.metric.metric_at(yhat, y)).to(scores.dtype)


#: diffcp's solvers that can be imported here (ECOS is optional: offered, it failed after
#: training with a raw ModuleNotFoundError; a verifying helper)
SOLVERS = [
    name
    for name, module in (("SCS", "scs"), ("ECOS", "ecos"), ("Clarabel", "clarabel"))
    if importlib.util.find_spec(module) is not None
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    grid_flag(p, "--datasets", "fashion-mnist,animal-mnist", "fashion-mnist")
    p.add_argument("--ratio", type=float, default=0.91, help="positive ratio of the train split")
    grid_flag(p, "--seeds", "0,1,2", "0")
    p.add_argument("--losses", default="bce,fbeta,fbeta-cvxpy", help="of bce, fbeta, fbeta-cvxpy")
    p.add_argument("--beta", type=float, default=1.0)
    # checked here, not after the other losses have trained (a docs-walking helper)
    p.add_argument(
        "--cvxpy-solver",
        default="SCS",
        choices=SOLVERS,
        help="cvxpylayers' solve_method (diffcp's solvers; default SCS)",
    )
    add_size_flags(p, epochs=2, train_size=1000)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    add_common_flags(p, "fscore")
    args = p.parse_args(argv)
    unknown = sorted(set(args.losses.split(",")) - {"bce", "fbeta", "fbeta-cvxpy"})
    if unknown:  # before any training, not after the first losses' runs
        p.error(f"--losses: unknown {', '.join(unknown)}; choose from bce, fbeta, fbeta-cvxpy")
    try:
        FBetaLoss(beta=args.beta)
    except LPError as err:
        p.error(f"--beta: {err}")
    apply_size_presets(args)
    fill_grid(args)
    return args


def make(name: str, args: argparse.Namespace) -> nn.Module:
    """The loss module of a name in ``bce``, ``fbeta``, ``fbeta-cvxpy``."""
    if name == "bce":
        return BCELoss()
    if name == "fbeta":
        return FBetaLoss(beta=args.beta)
    if name == "fbeta-cvxpy":
        return CvxpyFBetaLoss(beta=args.beta, solver=args.cvxpy_solver)
    raise SystemExit(f"unknown loss {name!r}; choose from bce, fbeta, fbeta-cvxpy")


def main(argv: list[str] | None = None) -> None:
    """Train every loss on every data set and seed; print and write the table; plot F1."""
    args = parse_args(argv)
    out = setup(args, "fscore")
    datasets = args.datasets.split(",")
    seeds = int_list(args.seeds, "--seeds")
    losses = args.losses.split(",")
    if "fbeta-cvxpy" in losses and importlib.util.find_spec("cvxpylayers") is None:
        # after a README (a) install (".[train]"): it crashed after training the other losses
        print('fbeta-cvxpy skipped: cvxpylayers is not installed (pip install -e ".[peers]")')
        losses.remove("fbeta-cvxpy")
    runs = []
    for name in datasets:
        for seed in seeds:
            data, config = load_run(args, name, seed, positive_ratio=args.ratio)
            for loss_name in losses:
                res = train_one(data, loss_name, config, loss=make(loss_name, args))
                runs.append(
                    {
                        "dataset": name,
                        "seed": seed,
                        "loss": loss_name,
                        "f1": res.metrics["f1"],
                        "roc_auc": res.metrics["roc_auc"],
                        "ms_per_step": 1000 * res.seconds_per_step,
                        "history": res.history,
                    }
                )
                print(
                    f"{name} seed {seed} {loss_name:>11}: F1 {res.metrics['f1']:.4f} "
                    f"AUC {res.metrics['roc_auc']:.4f} ({1000 * res.seconds_per_step:.0f} ms/step)",
                    flush=True,
                )

    header = ["loss"] + [f"{n} F1" for n in datasets] + ["ms/step (median)"]
    rows = []
    for loss in losses:
        cells = [
            mean_std([r["f1"] for r in runs if (r["dataset"], r["loss"]) == (n, loss)])
            for n in datasets
        ]
        ms = np.median([r["ms_per_step"] for r in runs if r["loss"] == loss])
        rows.append([loss, *cells, f"{ms:.0f}"])
    table = (
        f"Test F1 (%) of `logit > 0`, mean ± std over seeds {seeds}; training positive ratio "
        f"{args.ratio:.0%}, balanced test split; ms/step: median training time per step "
        "(forward, LP, backward, optimiser).\n\n" + markdown_table(header, rows)
    )
    write_outputs(out, table, {"args": vars(args) | {"out": str(out)}, "runs": runs})
    plot(out, runs, datasets, losses)


def plot(out, runs: list[dict], datasets: list[str], losses: list[str]) -> None:
    """``f1_curves.png``: test F1 per epoch (mean over seeds), one panel per data set."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.6), squeeze=False)
    for ax, name in zip(axes[0], datasets, strict=True):
        for loss in losses:
            curves = [
                [h["f1"] for h in r["history"]]
                for r in runs
                if (r["dataset"], r["loss"]) == (name, loss)
            ]
            ax.plot(range(1, len(curves[0]) + 1), np.mean(curves, axis=0), marker="o", label=loss)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("test F1")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, out / "f1_curves.png")


if __name__ == "__main__":
    run_main(main)
