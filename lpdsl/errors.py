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
    reworded by the layer and the losses, which know where the numbers came from.

    ``detail`` says which numbers and the limit; ``wider`` whether a wider compute dtype
    (float64) would take them. Each wording adds its own advice to these."""

    def __init__(self, message: str, detail: str = "", wider: bool = False) -> None:
        super().__init__(message)
        self.detail, self.wider = detail, wider

    def reworded(self, where: str, advice: str) -> DataScaleError:
        """The same refusal as ``where`` words it: ``"{where}: {detail}. {advice}"``, and the
        float64 advice where it applies."""
        wider = " (or compute in float64)" if self.wider else ""
        return DataScaleError(f"{where}: {self.detail}. {advice}{wider}", self.detail, self.wider)


class SolverError(LPError, RuntimeError):
    """A solve that did not reach optimality where optimality was required."""
