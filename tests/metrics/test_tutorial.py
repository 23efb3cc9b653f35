"""docs/tutorial.md's code blocks run, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"


def test_tutorial_code_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for k, block in enumerate(blocks):
        exec(compile(block, f"{TUTORIAL.name}[block {k}]", "exec"), namespace)
