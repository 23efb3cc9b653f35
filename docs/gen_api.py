"""Write docs/api.md, the API reference, from the public names' docstrings.

Run ``python docs/gen_api.py`` after changing a public docstring; a test checks that the
committed file is current. Plain markdown needs no site generator and reads well on GitHub.
"""

from __future__ import annotations

import enum
import inspect
import sys
from pathlib import Path

import lpdsl
import lpdsl.metrics

OUT = Path(__file__).with_name("api.md")

SECTIONS: list[tuple[str, object, list[str]]] = [
    ("Declare", lpdsl, ["Expression", "Variable", "Parameter", "Constant", "hstack", "vstack"]),
    (
        "Atoms",
        lpdsl,
        ["abs", "pos", "maximum", "minimum", "max", "min", "sum_largest", "norm1"],
    ),
    ("Problems", lpdsl, ["Minimize", "Maximize", "Problem", "Constraint"]),
    ("Compile", lpdsl, ["CompiledProblem", "Pattern", "SparseMatrix"]),
    ("Solve", lpdsl, ["solve", "Solution", "Status"]),
    ("Layer", lpdsl, ["LPLayer"]),
    ("Oracle", lpdsl, ["to_cvxpy", "check"]),
    (
        "Oracle results (`lpdsl.oracle`)",
        lpdsl.oracle,
        ["solve_with_cvxpy", "OracleSolution", "CheckReport"],
    ),
    ("Errors", lpdsl, ["LPError", "DSLError", "SolverError"]),
    (
        "Metrics (`lpdsl.metrics`)",
        lpdsl.metrics,
        [
            "AUCLoss",
            "MulticlassAUCLoss",
            "FBetaLoss",
            "JaccardLoss",
            "PrecisionAtRecallLoss",
            "RecallAtPrecisionLoss",
            "RatioMetricLoss",
            "NMF",
        ],
    ),
]


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _entry(name: str, obj: object) -> list[str]:
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):  # members, not Enum's signature
        members = ", ".join(f"`{m.name} = {m.value!r}`" for m in obj)
        doc = inspect.getdoc(obj) or "(no docstring)"
        return [f"### `{name}`", "", "*enum*", "", doc, "", f"Members: {members}.", ""]
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{name}{_signature(obj)}`", "", f"*{kind}*", ""]
    lines += [inspect.getdoc(obj) or "(no docstring)", ""]
    if inspect.isclass(obj):
        for attr, member in sorted(vars(obj).items()):
            if attr.startswith("_") or not (callable(member) or isinstance(member, property)):
                continue
            doc = inspect.getdoc(member)
            if not doc:
                continue
            sig = _signature(member) if callable(member) else ""
            summary = doc.split("\n\n")[0].replace("\n", " ")
            lines.append(f"- `{attr}{sig}`: {summary}")
        lines.append("")
    return lines


def render() -> str:
    """The whole reference as markdown."""
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/gen_api.py`; do not edit by hand.",
        "",
    ]
    for title, module, names in SECTIONS:
        lines += [f"## {title}", ""]
        for name in names:
            lines += _entry(name, getattr(module, name))
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if OUT.exists() and OUT.read_text() == text else 1)
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
