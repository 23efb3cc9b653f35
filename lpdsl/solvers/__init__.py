"""LP solvers: the batched generalized-Newton exterior-penalty backend (SPEC §3).

``solve`` and ``Solution`` are imported lazily: the driver (``newton``) imports the
derivatives (``lpdsl.diff``), which import this package's linear algebra, so an eager import
here would make ``import lpdsl.diff.active`` circular in a fresh interpreter.
"""

from __future__ import annotations

import importlib
from typing import Any

from lpdsl.solvers.status import Status

__all__ = ["Solution", "Status", "solve"]


def __getattr__(name: str) -> Any:
    if name not in ("Solution", "solve"):
        raise AttributeError(f"module 'lpdsl.solvers' has no attribute {name!r}")
    value = getattr(importlib.import_module("lpdsl.solvers.newton"), name)
    globals()[name] = value
    return value
