"""Per-item solver statuses (SPEC §3)."""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Outcome of solving one LP of a batch; ``sol.status`` holds these as integers."""

    OPTIMAL = 0
    INFEASIBLE = 1
    UNBOUNDED = 2
    MAX_ITER = 3
