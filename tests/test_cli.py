"""The lpdsl command line (lpdsl.cli): a tiny ``lpdsl train`` end to end, and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from lpdsl.cli import format_table, main


def test_tiny_train_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--losses",
            "bce",
            "--epochs",
            "2",
            "--train-size",
            "300",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    header, _, row = printed.strip().splitlines()
    assert header.split() == ["loss", "roc_auc", "f1", "average_precision", "ms/step", "train_s"]
    assert row.split()[0] == "bce"
    assert (out / "results.txt").read_text().split() == printed.split()
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"] == "digits (8 vs rest)"
    assert results["dataset"]["n_train"] == 300
    assert results["config"]["epochs"] == 2
    (run,) = results["results"]
    assert run["loss"] == "bce" and len(run["history"]) == 2
    assert f"{run['metrics']['roc_auc']:.4f}" == row.split()[1]  # the table shows the JSON
    for name in ("roc.png", "pr.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_multiclass_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "train",
        "--losses",
        "bce",
        "--epochs",
        "1",
        "--train-size",
        "200",
        "--task",
        "multiclass",
        "--drop-rate",
        "0.6",
        "--quiet",
        "--plots",
        "none",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    assert "auc_mu" in capsys.readouterr().out.splitlines()[0]
    assert json.loads((tmp_path / "results.json").read_text())["dataset"]["n_classes"] == 3
    assert not list(tmp_path.glob("*.png"))


def test_python_dash_m_help() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lpdsl", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--losses" in proc.stdout and "multiclass-auc" in proc.stdout


def test_unknown_loss_exits_2_with_the_names(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["train", "--losses", "bce,hinge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lpdsl train: error: unknown loss 'hinge'")
    assert "bce, auc, fbeta" in err


def test_missing_dataset_names_the_install_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LPDSL_FASHION_MNIST_DIR", str(tmp_path / "none"))
    assert main(["train", "--dataset", "fashion-mnist", "--losses", "bce"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_duplicate_loss_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--losses", "bce,bce"]) == 2
    assert "names a loss twice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "argument --epochs to be an integer >= 1 but got 0"),
        (["--batch-size", "0"], "argument --batch-size to be an integer >= 1 but got 0"),
        (["--lr", "-1"], "argument --lr to be a finite positive float but got -1.0"),
        (["--lr", "inf"], "argument --lr to be a finite positive float but got inf"),
        (["--device", "foo"], "unknown device 'foo'"),
        # the following were tracebacks from torch, numpy or scikit-learn
        (["--threads", "-1"], "--threads must be >= 0"),
        (["--seed", "-1"], "argument --seed to be an integer >= 0 but got -1"),
        (["--seed", str(2**32)], "argument --seed to be below 2**32"),
        (["--device", "meta"], "device 'meta' is not available"),
        (["--device", "xpu"], "device 'xpu' is not available"),
        # silently ignored before: --positive-ratio switched to the image-set protocol
        (["--positive-class", "3", "--positive-ratio", "0.9"], "cannot be combined"),
        (["--task", "multiclass", "--positive-ratio", "0.9"], "cannot be combined"),
        # ignored silently before
        (["--task", "multiclass", "--positive-class", "99"], "--positive-class 99 applies only"),
        (["--dataset", "fashion-mnist", "--positive-class", "3"], "--positive-class 3 applies"),
        (["--drop-rate", "0.3"], "--drop-rate 0.3 applies only to --task multiclass"),
        # a RuntimeError from inside Adam before
        (["--lr", "1e300"], "argument --lr to fit the network's float32 weights"),
        # Python names before: `train_size`, task='binary'
        (["--train-size", "0"], "--train-size must be an integer >= 2"),
        (["--dataset", "imbalanced:pima", "--task", "multiclass"], "use --task binary"),
        # checked whichever losses run: written as a bare NaN into results.json before
        (["--alpha", "nan"], "--alpha to be a float in (0, 1) but got nan"),
        (["--beta", "-1"], "--beta to be a finite positive float"),
        (["--threads", "100000"], "more than 4 per core"),  # out of memory before
    ],
)
def test_bad_training_options_exit_2_before_training(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # these were tracebacks (Adam's "Invalid learning rate", CUDA's lazy init) or, for
    # --epochs 0, a report on untrained networks
    assert main(["train", "--losses", "bce", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--losses", "bce,auc"], "--batch-size 1 is too small for auc: every batch would"),
        (
            ["--losses", "multiclass-auc", "--task", "multiclass"],
            "--batch-size 1 is too small for multiclass-auc",
        ),
        # a ratio metric of one example is degenerate or only pushes that score up: every
        # ratio loss ended with ROC-AUC 0.37 on digits (a reviewing helper, eighteenth pass)
        (["--losses", "fbeta"], "--batch-size 1 is too small for fbeta: a batch of one example"),
        (["--losses", "bce,r@p"], "--batch-size 1 is too small for r@p"),
    ],
)
def test_a_batch_size_that_makes_every_batch_degenerate_is_refused(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # every batch of one example has no pair: the AUC losses trained nothing, silently
    out = tmp_path / "r"
    argv = ["train", *args, "--batch-size", "1", "--epochs", "1", "--train-size", "40"]
    assert main([*argv, "--quiet", "--plots", "none", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "use --batch-size 2 or more" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before loading data or training


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--losses", "bce", "--device", "cuda"]) == 2
    assert "device 'cuda' is not available" in capsys.readouterr().err


def test_output_folder_that_cannot_be_made_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("")  # FileExistsError before
    args = ["train", "--losses", "bce", "--epochs", "1", "--train-size", "100", "--quiet"]
    assert main([*args, "--out", str(afile)]) == 2
    assert f"cannot write results to the output folder {afile}" in capsys.readouterr().err


def test_an_output_folder_name_too_long_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    # exists() raised OSError: File name too long, a traceback (a reviewing helper, 22nd pass)
    out = "/tmp/" + "x" * 300 + "/r"
    assert main(["train", "--losses", "bce", "--epochs", "1", "--quiet", "--out", out]) == 2
    assert "cannot write results to the output folder" in capsys.readouterr().err


@pytest.mark.parametrize("n", [5, 7, 17, 98, *range(3, 101, 9)])
def test_every_zoo_model_has_an_example_batch_it_solves(n: int) -> None:
    """At seed 0 the example batch of 35 of the 99 sizes could not reach P@R's recall or
    R@P's precision of 0.8: `check --n 5` exited 1, `show p@r --n 5` 2 (a reviewing helper,
    22nd pass). Each model takes the first seed whose batch it solves."""
    from lpdsl.cli import _models

    for name, build in _models().items():
        prob, values = build(n)
        assert prob.variables(), name


def test_output_folder_that_takes_no_results_exits_2_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An existing folder that cannot take the result files let every loss train, then failed
    with a traceback (IsADirectoryError, or a read-only folder's PermissionError)."""
    import lpdsl.cli as cli

    out = tmp_path / "r"
    (out / "results.json").mkdir(parents=True)
    trained = []
    monkeypatch.setattr(cli, "_data_and_losses", lambda *a: trained.append(a))
    args = ["train", "--losses", "bce", "--epochs", "1", "--quiet", "--out", str(out)]
    assert main(args) == 2
    assert "a folder is in the way of a result file (results.json)" in capsys.readouterr().err
    assert not trained


def test_a_refused_run_leaves_no_empty_output_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new1" / "new2"  # the parents it made were left behind
    args = ["train", "--dataset", "imbalanced:nonexistent", "--quiet", "--out", str(out)]
    assert main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "new1").exists()


def test_a_path_in_a_message_keeps_its_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the flag translation made runs/lr=0.01,seed=3 read runs/--lr 0.01,--seed 3
    out = tmp_path / "lr=0.01,seed=3"
    out.write_text("")
    assert main(["train", "--losses", "bce", "--quiet", "--out", str(out)]) == 2
    assert f"output folder {out}:" in capsys.readouterr().err


def test_divergence_in_an_epochs_last_step_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one step per epoch: the loss is checked before the step, and the NaN weights reached
    # scikit-learn's metrics ("Input contains infinity")
    args = ["train", "--losses", "bce", "--epochs", "1", "--lr", "1e30", "--batch-size", "2000"]
    assert main([*args, "--quiet", "--out", str(tmp_path / "r")]) == 2
    assert "outputs are NaN/Inf after epoch 1" in capsys.readouterr().err


def test_results_record_the_command_as_given_and_quoted(tmp_path: Path) -> None:
    out = tmp_path / "with space"
    args = ["train", "--losses", "bce", "--epochs", "1", "--train-size", "100", "--quiet"]
    assert main([*args, "--plots", "none", "--out", str(out)]) == 0
    command = json.loads((out / "results.json").read_text())["command"]
    assert command.startswith("lpdsl train --losses bce") and f"'{out}'" in command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "auc", "--n", "-1"], "--n must be at least 2"),
        (["check", "auc", "--n", "0"], "--n must be at least 2"),
        (["show", "multiclass-auc", "--n", "2"], "--n must be at least 3"),
        (["check", "--n", "2"], "--n must be at least 3"),  # every model, multiclass too
        # a traceback allocating 1.8 TiB
        (["show", "auc", "--n", "1000000"], "--n must be at most 100, got 1000000"),
        (["check", "fbeta", "--n", "101"], "--n must be at most 100"),
        (["check", "auc", "--rtol", "-1"], "--rtol must be a finite number >= 0"),
        (["check", "auc", "--atol", "nan"], "--atol must be a finite number >= 0"),
    ],
)
def test_bad_show_and_check_options_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # were a RuntimeError, or per-model "failures" with exit 1
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_show_and_check_refuse_unknown_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "svm"]) == 2
    assert "unknown model 'svm'; choose from auc, fbeta" in capsys.readouterr().err
    assert main(["check", "svm"]) == 2
    assert "unknown model(s) svm" in capsys.readouterr().err


def test_check_reports_a_failing_model_and_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(n: int):
        raise RuntimeError("compiler exploded")

    monkeypatch.setattr("lpdsl.cli._models", lambda: {"broken": broken})
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert "RuntimeError: compiler exploded" in out
    assert "0 of 1 models agree with CVXPY" in out


def test_format_table_aligns_numbers_right_and_text_left() -> None:
    table = format_table(["loss", "auc"], [["bce", 0.5], ["fbeta", 0.98765]])
    assert table.splitlines() == [
        "loss      auc",
        "-----  ------",
        "bce    0.5000",
        "fbeta  0.9877",
    ]


def test_help_names_every_registered_loss() -> None:
    from lpdsl.cli import LOSS_HELP
    from lpdsl.training import LOSSES

    assert list(LOSS_HELP) == list(LOSSES)


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from lpdsl.cli import build_parser; build_parser(); "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == "False"


@pytest.mark.parametrize("ok", [True, False])
def test_check_table_and_exit_status_follow_the_reports(
    ok: bool, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []

    def fake_check(prob, *values, backend, rtol, atol):
        seen.append((prob, values, backend, rtol))
        return types.SimpleNamespace(
            ok=ok,
            lpdsl_value=0.25,
            cvxpy_value=0.25 + (0 if ok else 0.5),
            value_diff=0 if ok else -0.5,
            backend=backend,
            failures=[] if ok else ["objective values differ by 0.5"],
        )

    monkeypatch.setattr("lpdsl.cli._models", lambda: {"toy": lambda n: ("PROBLEM", [n])})
    monkeypatch.setattr("lpdsl.check", fake_check, raising=False)
    assert main(["check", "--n", "5", "--rtol", "1e-5"]) == (0 if ok else 1)
    assert seen == [("PROBLEM", (5,), "newton", 1e-5)]
    out = capsys.readouterr().out
    assert ("ok" if ok else "objective values differ by 0.5") in out.splitlines()[2]
    assert f"{1 if ok else 0} of 1 models agree with CVXPY" in out


def test_format_table_prints_no_negative_zero() -> None:
    # lpdsl check printed -0.0000 for AUC values of -1e-12 (a reviewing helper's run)
    table = format_table(["value"], [[-1e-12], [-0.25]])
    assert "-0.0000" not in table and "0.0000" in table and "-0.2500" in table


def test_a_missing_train_extra_is_named_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `pip install lpdsl` installs the command without the extra: scikit-learn's absence was a
    # traceback from the data loader, matplotlib's one after every loss had trained
    import importlib.util

    real = importlib.util.find_spec
    for gone, plots, says in [
        ("sklearn", "none", "needs scikit-learn, of the train extra: pip install 'lpdsl[train]'"),
        ("matplotlib", "png", "needs matplotlib, of the train extra: pip install 'lpdsl[train]'"),
    ]:
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a, g=gone: None if name == g else real(name)
        )
        out = tmp_path / gone
        assert main(["train", "--losses", "bce", "--plots", plots, "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert says in err and ("--plots none" in err) == (gone == "matplotlib")
        assert not out.exists()


def test_an_interrupted_run_keeps_the_losses_that_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C was a traceback, and the output folder was removed with the finished losses
    import lpdsl.training

    real = lpdsl.training.train_one

    def train_one(data, name, *args, **kwargs):
        if name == "auc":
            raise KeyboardInterrupt
        return real(data, name, *args, **kwargs)

    monkeypatch.setattr(lpdsl.training, "train_one", train_one)
    out = tmp_path / "run"
    args = ["train", "--losses", "bce,auc", "--epochs", "1", "--train-size", "100", "--quiet"]
    assert main([*args, "--plots", "none", "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    kept = f"the losses that finished are in {out}/results.json"
    assert err == f"lpdsl train: interrupted during auc; {kept}"
    saved = json.loads((out / "results.json").read_text())
    assert saved["complete"] is False and [r["loss"] for r in saved["results"]] == ["bce"]


def test_default_output_folders_of_runs_started_together_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two runs started in the same second wrote into one runs/<time> folder
    from lpdsl.cli import _fresh_folder

    monkeypatch.chdir(tmp_path)
    first, made = _fresh_folder(Path("runs") / "20261130-120000")
    second, _ = _fresh_folder(Path("runs") / "20261130-120000")
    assert first.name == "20261130-120000" and second.name == "20261130-120000-2"
    assert made == [first, Path("runs")]


def test_a_read_only_result_file_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a previous run's results.json made read-only: every loss trained, then PermissionError
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text("{}")
    real = os.access

    def access(path, mode):
        return real(path, mode) and Path(path).name != "results.json"

    monkeypatch.setattr(os, "access", access)
    assert main(["train", "--losses", "bce", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "a result file there is read-only (results.json); choose another --out" in err


def test_an_lp_loss_on_diverged_outputs_names_the_loss_and_lr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the AUC loss refused the NaN scores in its own words ("Expected `scores` ... finite"),
    # naming neither the loss, the step nor --lr
    args = ["train", "--losses", "auc", "--epochs", "2", "--lr", "1e30", "--train-size", "200"]
    assert main([*args, "--quiet", "--plots", "none", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "loss 'auc': the network's outputs are NaN/Inf at epoch" in err
    assert "try a smaller --lr" in err


def test_an_earlier_runs_results_do_not_stay_beside_this_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # an interrupted run into a folder holding an earlier run's results kept its complete
    # results.json (or its plots beside the partial one), which read as this run's
    import lpdsl.training

    out = tmp_path / "run"
    out.mkdir()
    for name in ("results.json", "results.txt", "roc.png"):
        (out / name).write_text("earlier run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lpdsl.training, "train_one", interrupted)
    args = ["train", "--losses", "bce", "--epochs", "1", "--train-size", "100", "--quiet"]
    assert main([*args, "--out", str(out)]) == 130
    assert sorted(p.name for p in out.iterdir()) == []
    runs = tmp_path / "elsewhere"
    runs.mkdir()
    (runs / "runs").write_text("a file where the default folder goes")
    monkeypatch.chdir(runs)
    assert main(["train", "--losses", "bce", "--quiet"]) == 2
    assert "cannot make the output folder runs/" in capsys.readouterr().err


def test_multiclass_train_defaults_to_the_multiclass_losses(tmp_path: Path) -> None:
    """``--task multiclass`` without ``--losses`` failed: the default was the binary set,
    whose ``auc`` does not fit a multiclass task (a docs-walking helper, 25th pass)."""
    args = ["train", "--task", "multiclass", "--epochs", "1", "--train-size", "150"]
    assert main([*args, "--quiet", "--plots", "none", "--out", str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "results.json").read_text())["results"]
    assert [run["loss"] for run in runs] == ["bce", "multiclass-auc"]
