"""Make the oracle's model strategies importable as ``lpdsl_oracle_strategies``.

Loaded under a name of its own (not a bare ``strategies`` on ``sys.path``) so that no other
test folder's helper module can shadow it under pytest's importlib import mode.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_NAME = "lpdsl_oracle_strategies"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(_NAME, Path(__file__).with_name("strategies.py"))
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)
