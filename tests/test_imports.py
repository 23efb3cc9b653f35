"""Every module of lpdsl imports on its own, in a fresh interpreter (no import cycles)."""

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys
import lpdsl
names = [m.name for m in pkgutil.walk_packages(lpdsl.__path__, "lpdsl.")
         if not m.name.endswith("__main__")]
failed = []
for name in names:
    for key in [k for k in sys.modules if k == "lpdsl" or k.startswith("lpdsl.")]:
        del sys.modules[key]  # a fresh start for each module, torch staying loaded
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print(len(names))
print("\\n".join(failed))
"""


def test_every_module_imports_first():
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert int(out[0]) > 30
    assert out[1:] == [] or out[1:] == [""], "\n".join(out[1:])
