"""The compiler: declared problems -> batched, differentiable ``(A, b, c)`` (SPEC §2).

See docs/compiler.md for the standard form, the coefficient maps and each pass.
"""

from __future__ import annotations

from lpdsl.compiler.compiled import CompiledProblem, compile_problem

__all__ = ["CompiledProblem", "compile_problem"]
