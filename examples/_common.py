"""Shared helpers of the experiment scripts in ``examples/`` (not part of lpdsl).

Tables as markdown, mean ± std over seeds, output folders, test-set subsampling, plots and
the command-line flags every experiment has (``--out``, ``--threads``, ``--device``); for the
classifier experiments (``binary_auc``, ``multiclass_auc``, ``fscore``) also the size presets
of ``--full`` and ``--smoke`` and the data and training configuration of one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpdsl.data import Dataset, load_dataset, stratified_subsample
from lpdsl.errors import LPError
from lpdsl.training import TrainConfig


def add_common_flags(parser: argparse.ArgumentParser, name: str) -> None:
    """``--out``, ``--threads``, ``--device``, ``--smoke`` and ``--full``."""
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default runs/{name}-<time>)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny configuration (seconds), for the tests"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="the full training and test sets and more epochs (meant for a GPU)",
    )


def setup(args: argparse.Namespace, name: str) -> Path:
    """Set torch's threads and make the output folder; returns it."""
    if args.threads < 0:  # (it was accepted and ignored; lpdsl train refuses it)
        raise SystemExit(f"{name}: --threads must be >= 0 (0: torch's default), got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # an existing file, a read-only parent: one line, not a traceback
        raise SystemExit(f"{name}: cannot make the output folder {out}: {err.strerror}") from None
    return out


def add_size_flags(parser: argparse.ArgumentParser, *, epochs: int, train_size: int) -> None:
    """``--epochs``, ``--train-size``, ``--test-size``, ``--model``: the sizes of a classifier
    experiment, the flags :func:`apply_size_presets` sets for ``--full`` and ``--smoke``."""
    # defaults are applied by apply_size_presets, after --full and --smoke, which may only
    # fill the flags not given (--full --epochs 1 ran 20 epochs: a reviewing helper)
    parser.add_argument("--epochs", type=int, default=None, help=f"(default {epochs})")
    parser.add_argument(
        "--train-size", type=int, default=None, help=f"0: all (default {train_size})"
    )
    parser.add_argument("--test-size", type=int, default=None, help="0: all (default 2000)")
    parser.add_argument("--model", default=None, help="cnn or mlp (default cnn)")
    parser.set_defaults(_sizes={"epochs": epochs, "train_size": train_size, "test_size": 2000})


def apply_size_presets(args: argparse.Namespace) -> None:
    """The sizes of ``--full`` and ``--smoke`` shared by the classifier experiments.

    ``--full``: the whole training and test splits, 20 epochs; ``--smoke``: 64 training and
    100 test examples, one epoch, an MLP. Each script narrows its grid for ``--smoke`` itself.
    """
    preset = {**args._sizes, "model": "cnn"}
    if args.full:
        preset.update(train_size=0, test_size=0, epochs=20)
    if args.smoke:
        preset.update(train_size=64, test_size=100, epochs=1, model="mlp")
    for name, value in preset.items():
        if getattr(args, name) is None:  # a flag given explicitly wins over the preset
            setattr(args, name, value)
    del args._sizes


def int_list(text: str, flag: str) -> list[int]:
    """A comma-separated list of integers, or one line naming ``flag`` (``--seeds a`` was a
    raw ValueError traceback)."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"{flag} takes comma-separated integers, got {text!r}") from None


def grid_flag(parser: argparse.ArgumentParser, flag: str, default: str, smoke: str) -> None:
    """A comma-separated grid flag whose ``--smoke`` value applies only where the flag is not
    given (``--smoke --datasets digits`` runs digits: it used to be reset to Fashion-MNIST)."""
    parser.add_argument(
        flag, default=None, help=f"comma-separated (default {default}; with --smoke {smoke})"
    )
    parser.set_defaults(**{f"_grid_{flag.lstrip('-').replace('-', '_')}": (default, smoke)})


def fill_grid(args: argparse.Namespace) -> None:
    """Give each :func:`grid_flag` not passed its default, or its ``--smoke`` value."""
    for key, value in list(vars(args).items()):
        if key.startswith("_grid_"):
            default, smoke = value
            name = key.removeprefix("_grid_")
            if getattr(args, name) is None:
                setattr(args, name, smoke if args.smoke else default)


def run_main(main: Callable[[], Any]) -> None:
    """Run an experiment's ``main``; lpdsl's refusal of a flag's value (an ``LPError``, whose
    message says what to do) is one line and exit status 2, not a traceback."""
    try:
        main()
    except LPError as err:
        sys.exit(f"{Path(sys.argv[0]).name}: error: {err}")


def load_run(
    args: argparse.Namespace, name: str, seed: int, **task: Any
) -> tuple[Dataset, TrainConfig]:
    """The data set and training configuration of one run of a classifier experiment.

    Args:
        args: The parsed flags (``--train-size``, ``--test-size``, ``--epochs``, ``--lr``,
            ``--model``, ``--device``; a size of 0 means all).
        name: The data set, as :func:`lpdsl.data.load_dataset` names it.
        seed: Seeds the split, the test subsample and the training.
        **task: The task's protocol, passed to :func:`lpdsl.data.load_dataset`
            (``positive_ratio=...`` or ``task="multiclass", drop_rate=...``).
    """
    data = load_dataset(name, train_size=args.train_size or None, seed=seed, **task)
    data = subsample_test(data, args.test_size or None, seed)
    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, seed=seed, model=args.model, device=args.device
    )
    return data, config


def command_line() -> str:
    """The command that is running, as it could be typed again."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def subsample_test(data: Dataset, n: int | None, seed: int) -> Dataset:
    """``data`` with at most ``n`` test examples, stratified by label (``None``: all)."""
    rng = np.random.default_rng(seed + 10_000)
    x_test, y_test = stratified_subsample(data.x_test, data.y_test, n, rng)
    return dataclasses.replace(data, x_test=x_test, y_test=y_test)


def mean_std(values: Sequence[float], scale: float = 100.0, digits: int = 1) -> str:
    """``"mean ± std"`` of ``values`` times ``scale`` (sample std; just the mean for one)."""
    arr = np.asarray(values, dtype=float) * scale
    if len(arr) == 0:
        return "–"
    if len(arr) == 1:
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_outputs(out: Path, table: str, payload: dict) -> None:
    """Write ``results.md`` (the command and the table) and ``results.json``; print the table."""
    cmd = command_line()
    (out / "results.md").write_text(f"`{cmd}`\n\n{table}\n")
    (out / "results.json").write_text(json.dumps({"command": cmd, **payload}, indent=1))
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'} and plots in {out}")


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def errorbar_over_seeds(
    ax: Any, xs: Sequence[float], cells: Sequence[Sequence[float]], label: str
) -> None:
    """Plot the mean of each cell's values at ``xs``, with their sample std as error bars."""
    mean = [np.mean(v) for v in cells]
    std = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in cells]
    ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=label)


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (120 dpi) and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
