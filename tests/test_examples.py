"""Smoke tests of the experiment scripts in ``examples/`` (``--smoke``: a few steps each).

Each script runs in-process with its tiny configuration and must write its markdown table,
its JSON and its plot. The real runs and their tables are in ``docs/results.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module", autouse=True)
def examples_on_path():
    """Make ``examples/`` importable (the scripts import their ``_common`` helper)."""
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


@pytest.fixture
def fashion_mnist(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch, write_idx
) -> None:
    """The installed Fashion-MNIST, else a small stand-in in its layout (10 classes, each a
    bright square in its own place on noise), so that the scripts run on every machine: CI's
    fresh one has no Debian package, and the smoke tests were skipped there."""
    from lpdsl.data import fashion_mnist_dir

    if (fashion_mnist_dir() / "t10k-labels-idx1-ubyte.gz").exists():
        return
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 3000), ("t10k", 1000)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 120, (n, 28, 28))
        for k in range(10):
            r, c = divmod(k, 5)
            images[labels == k, 4 + 10 * r : 12 + 10 * r, 1 + 5 * c : 6 + 5 * c] += 120
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("LPDSL_FASHION_MNIST_DIR", str(folder))


@pytest.mark.parametrize(
    ("script", "plot", "rows"),
    [
        ("binary_auc", "auc_vs_ratio.png", ["bce", "auc"]),
        ("multiclass_auc", "auc_vs_drop.png", ["ce", "auc-ova"]),
        ("fscore", "f1_curves.png", ["bce", "fbeta", "fbeta-cvxpy"]),
        ("nmf_activations", "nmf_heatmaps.png", []),
    ],
)
def test_example_smoke(
    script: str, plot: str, rows: list[str], tmp_path: Path, fashion_mnist: None
) -> None:
    if script == "fscore":
        pytest.importorskip("cvxpylayers")
    module = importlib.import_module(script)
    module.main(["--smoke", "--out", str(tmp_path)])
    table = (tmp_path / "results.md").read_text()
    for name in rows:
        assert f"| {name} |" in table
    assert (tmp_path / plot).stat().st_size > 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert runs
    if script == "nmf_activations":
        # real activations are not exactly separable; the robust LP's anchors must be
        # recovered by the exact NMF LP on the separable projection
        assert all(r["projection_anchors_agree"] == "yes" for r in runs)


def test_smoke_keeps_a_grid_flag_that_is_given() -> None:
    # --smoke reset --datasets to Fashion-MNIST, so `--smoke --datasets digits` could not run
    # on a machine without it (a reviewing helper's run)
    binary = importlib.import_module("binary_auc")
    args = binary.parse_args(["--smoke", "--datasets", "digits"])
    assert (args.datasets, args.ratios, args.seeds) == ("digits", "0.91", "0")
    args = binary.parse_args([])
    assert (args.datasets, args.seeds) == ("fashion-mnist,animal-mnist", "0,1,2")
    multi = importlib.import_module("multiclass_auc")
    assert multi.parse_args(["--smoke", "--drop-rates", "0.5"]).drop_rates == "0.5"


def test_a_refused_flag_value_is_one_line(monkeypatch, tmp_path: Path) -> None:
    # lpdsl's refusal (positive_ratio must lie in (0, 1)) came at the end of a traceback
    binary = importlib.import_module("binary_auc")
    common = importlib.import_module("_common")
    monkeypatch.setattr(sys, "argv", ["binary_auc.py"])
    with pytest.raises(SystemExit) as stop:
        flags = ["--smoke", "--datasets", "digits", "--ratios", "1.5", "--out", str(tmp_path)]
        common.run_main(lambda: binary.main(flags))
    assert "binary_auc.py: error: positive_ratio must lie in (0, 1)" in str(stop.value)


def test_presets_fill_only_the_size_flags_not_given(tmp_path: Path) -> None:
    # --full and --smoke overrode an explicit --epochs, --train-size, --test-size or --model
    # (`--full --epochs 1` ran 20 epochs), and --seeds a was a raw ValueError (a reviewing
    # helper's runs)
    from _common import int_list, setup

    binary = importlib.import_module("binary_auc")

    def sizes(*flags: str) -> tuple:
        args = binary.parse_args(list(flags))  # (applies the presets)
        return args.epochs, args.train_size, args.test_size, args.model

    assert sizes() == (3, 2000, 2000, "cnn")
    assert sizes("--full") == (20, 0, 0, "cnn")
    assert sizes("--full", "--epochs", "1") == (1, 0, 0, "cnn")
    assert sizes("--smoke", "--epochs", "3", "--train-size", "200") == (3, 200, 100, "mlp")
    assert sizes("--smoke", "--model", "cnn") == (1, 64, 100, "cnn")
    with pytest.raises(SystemExit, match="--seeds takes comma-separated integers, got 'a'"):
        int_list("a", "--seeds")
    afile = tmp_path / "afile"
    afile.write_text("")
    args = binary.parse_args(["--out", str(afile / "run")])
    with pytest.raises(SystemExit, match="cannot make the output folder"):
        setup(args, "binary_auc")


def test_nmf_activations_flags_are_kept_and_checked_before_training(capsys) -> None:
    """``--smoke`` and ``--full`` overwrote ``--ranks``, ``--images``, ``--epochs`` and
    ``--train-size`` given explicitly, ``--device`` was never read, ``--threads -1`` was
    ignored and ``fscore.py --cvxpy-solver BOGUS`` failed after training (a docs-walking
    helper, 25th pass)."""
    nmf = importlib.import_module("nmf_activations")
    args = nmf.parse_args(["--smoke", "--ranks", "2", "--images", "1"])
    assert (args.ranks, args.images, args.pool, args.train_size) == ("2", "1", 7, 200)
    args = nmf.parse_args(["--full", "--epochs", "2"])
    assert (args.epochs, args.train_size, args.ranks) == (2, None, "1,2")
    for flags, message in (
        (["--device", "bogus_device"], "unknown device"),
        (["--pool", "0"], "--pool must be >= 1"),
    ):
        with pytest.raises(SystemExit):
            nmf.parse_args(flags)
        assert message in capsys.readouterr().err
    from _common import setup

    with pytest.raises(SystemExit, match="--threads must be >= 0"):
        setup(nmf.parse_args(["--threads", "-1"]), "nmf_activations")
    fscore = importlib.import_module("fscore")
    with pytest.raises(SystemExit):
        fscore.parse_args(["--cvxpy-solver", "BOGUS"])
    # only solvers that import are offered (ECOS, offered without its package, failed after
    # training: a verifying helper)
    assert all(importlib.util.find_spec(n.lower()) for n in fscore.SOLVERS)


def test_nmf_activations_pool_beyond_the_maps_is_refused_before_training(fashion_mnist) -> None:
    nmf = importlib.import_module("nmf_activations")
    args = nmf.parse_args(["--smoke", "--pool", "15"])
    with pytest.raises(SystemExit, match="--pool must be at most 14"):
        nmf.train_cnn(args, [0], [1])
