"""Shared helpers of the experiment scripts in ``examples/`` (not part of lpdsl).

Tables as markdown, mean ± std over seeds, output folders, test-set subsampling and the
command-line flags every experiment has (``--out``, ``--threads``, ``--device``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from lpdsl.data import Dataset


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
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def command_line() -> str:
    """The command that is running, as it could be typed again."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def subsample_test(data: Dataset, n: int | None, seed: int) -> Dataset:
    """``data`` with at most ``n`` test examples, stratified by label (``None``: all)."""
    if n is None or n >= len(data.y_test):
        return data
    rng = np.random.default_rng(seed + 10_000)
    keep = []
    for c in np.unique(data.y_test):
        idx = np.flatnonzero(data.y_test == c)
        k = max(1, round(n * len(idx) / len(data.y_test)))
        keep.append(rng.choice(idx, size=min(k, len(idx)), replace=False))
    sel = np.sort(np.concatenate(keep))
    return dataclasses.replace(data, x_test=data.x_test[sel], y_test=data.y_test[sel])


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
