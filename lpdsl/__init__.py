"""lpdsl: declare linear programs over network outputs, compile them to differentiable layers.

The public names are those of SPEC.md. They are imported lazily, so that ``import lpdsl``
stays cheap and never imports CVXPY (only :func:`check` and ``Problem.to_cvxpy`` need it).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC: dict[str, str] = {
    "LPError": "lpdsl.errors",
    "DSLError": "lpdsl.errors",
    "SolverError": "lpdsl.errors",
    "Expression": "lpdsl.expressions",
    "Variable": "lpdsl.expressions",
    "Parameter": "lpdsl.expressions",
    "Constant": "lpdsl.expressions",
    "hstack": "lpdsl.expressions",
    "vstack": "lpdsl.expressions",
    "abs": "lpdsl.atoms",
    "pos": "lpdsl.atoms",
    "maximum": "lpdsl.atoms",
    "minimum": "lpdsl.atoms",
    "max": "lpdsl.atoms",
    "min": "lpdsl.atoms",
    "sum_largest": "lpdsl.atoms",
    "norm1": "lpdsl.atoms",
    "Minimize": "lpdsl.problem",
    "Maximize": "lpdsl.problem",
    "Problem": "lpdsl.problem",
    "Constraint": "lpdsl.problem",
    "CompiledProblem": "lpdsl.compiler",
    "Pattern": "lpdsl.sparse",
    "SparseMatrix": "lpdsl.sparse",
    "solve": "lpdsl.solvers",
    "Solution": "lpdsl.solvers",
    "Status": "lpdsl.solvers.status",
    "LPLayer": "lpdsl.layers",
    "check": "lpdsl.oracle",
    "to_cvxpy": "lpdsl.oracle",
}

#: Subpackages reachable as attributes (``lp.metrics.AUCLoss()`` after ``import lpdsl as lp``).
_SUBMODULES = frozenset({"metrics", "training", "data", "distributed", "oracle", "sparse"})

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"lpdsl.{name}")  # the import binds it in globals()
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'lpdsl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC) | _SUBMODULES)
