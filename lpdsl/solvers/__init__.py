"""LP solvers: the batched generalized-Newton exterior-penalty backend (SPEC §3)."""

from lpdsl.solvers.newton import Solution, solve
from lpdsl.solvers.status import Status

__all__ = ["Solution", "Status", "solve"]
