"""Derivatives of the LP solution: active-set recovery (:mod:`.active`), unrolling (:mod:`.unroll`)."""
