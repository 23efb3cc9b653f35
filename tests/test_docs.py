"""The docs stay true: the README's example runs, the API reference is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    assert namespace["z_star"].shape == (64, 8)


def test_readme_commands_match_ci():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_cmd = next(line for line in readme.splitlines() if "pytest" in line and "pip" in line)
    run_part = test_cmd.split("&&")[-1].strip()
    assert run_part in ci, f"CI does not run the README's test command {run_part!r}"


def test_api_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], cwd=ROOT
    )
    assert result.returncode == 0, "docs/api.md is stale: run `python docs/gen_api.py`"


def test_index_examples_run():
    text = (ROOT / "docs" / "index.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, "docs/index.md", "exec"), {})
