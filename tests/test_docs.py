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


def test_api_reference_covers_every_public_name():
    """lpdsl.Expression was public (in __all__) and absent from the reference, whose --check
    only compares the page with its own list of names."""
    import importlib.util

    import lpdsl.metrics

    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    gen_api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_api)
    listed = {(module.__name__, name) for _, module, names in gen_api.SECTIONS for name in names}
    public = {(m.__name__, name) for m in (lpdsl, lpdsl.metrics) for name in m.__all__}
    assert public <= listed, sorted(public - listed)


def test_api_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_api.py"), "--check"], cwd=ROOT
    )
    assert result.returncode == 0, "docs/api.md is stale: run `python docs/gen_api.py`"


def test_index_examples_run():
    text = (ROOT / "docs" / "index.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        exec(compile(block, "docs/index.md", "exec"), {})
