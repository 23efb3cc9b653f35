"""The error types of lpdsl.

Every message says what was wrong, names the objects involved (by their ``name``) with
their shapes, and says what to do about it.
"""

from __future__ import annotations


class LPError(Exception):
    """Base class of every error raised by lpdsl."""


class DSLError(LPError, ValueError):
    """A modelling or data error: bad shapes, non-linear products, bad parameter values."""


class DataScaleError(DSLError):
    """Numbers the solver cannot take (their squares overflow): raised by ``solve()``, and
    reworded by the layer and the losses, which know where the numbers came from."""


class SolverError(LPError, RuntimeError):
    """A solve that did not reach optimality where optimality was required."""
