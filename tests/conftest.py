"""Fixtures shared by the test packages."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the IDX format (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def write_idx() -> Callable[[Path, np.ndarray], None]:
    """The IDX writer of fake Fashion-MNIST files."""
    return _write_idx
