"""Derivatives of the LP solution: active-set recovery and unrolled Newton iterations."""
