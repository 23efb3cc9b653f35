"""Problem bookkeeping (parameters/variables order, delegation), rendering, lazy imports."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
from matplotlib.mathtext import MathTextParser

import lpdsl as lp
from lpdsl.rendering import to_latex, to_text


def fscore_like() -> tuple[lp.Problem, list, list]:
    s = lp.Parameter(4, name="scores")
    y = lp.Parameter(4, name="labels")
    z = lp.Variable(4, name="z", nonneg=True)
    t = lp.Variable(name="t", nonneg=True)
    prob = lp.Problem(lp.Maximize((2 * y) @ z), [z.sum() + y.sum() * t == 1, z <= t, s * t <= z])
    return prob, [s, y], [z, t]


def test_parameters_and_variables_in_creation_order() -> None:
    b = lp.Parameter(name="b")
    u = lp.Variable(2, name="u")
    a = lp.Parameter(2, name="a")
    v = lp.Variable(name="v")
    unused = lp.Variable(name="unused")
    # used in reverse order of creation, and more than once
    prob = lp.Problem(lp.Minimize(v + a @ u), [a * v <= b, u >= 0, v + b >= a.sum()])
    assert prob.parameters() == [b, a]
    assert prob.variables() == [u, v]
    assert all(v is not unused for v in prob.variables())
    ratio = lp.Problem(lp.Minimize((a @ u + 1) / (v + b)), [v >= 1])
    assert ratio.parameters() == [b, a] and ratio.variables() == [u, v]
    assert ratio.is_ratio and not prob.is_ratio
    assert isinstance(prob.constraints, tuple) and len(prob.constraints) == 3
    assert repr(prob) == "Problem(Minimize, 3 constraints, 2 variables, 2 parameters)"


def test_compile_and_to_cvxpy_delegate(monkeypatch: pytest.MonkeyPatch) -> None:
    prob, _, _ = fscore_like()
    calls = []
    fake_compiler = types.ModuleType("lpdsl.compiler")
    fake_compiler.compile_problem = lambda p: calls.append(("compile", p)) or "compiled"
    fake_oracle = types.ModuleType("lpdsl.oracle")
    fake_oracle.to_cvxpy = lambda p, *v: calls.append(("cvxpy", p, v)) or "cp"
    monkeypatch.setitem(sys.modules, "lpdsl.compiler", fake_compiler)
    monkeypatch.setitem(sys.modules, "lpdsl.oracle", fake_oracle)
    assert prob.compile() == "compiled"
    assert prob.to_cvxpy(1, 2) == "cp"
    assert calls == [("compile", prob), ("cvxpy", prob, (1, 2))]


def test_problem_text_rendering() -> None:
    prob, _, _ = fscore_like()
    text = str(prob)
    assert text.splitlines() == [
        "maximize (2·labels) @ z",
        "subject to",
        "    sum(z) + sum(labels)·t == 1",
        "    z <= t",
        "    scores·t <= z",
        "variables: z (4, nonneg), t (scalar, nonneg)",
        "parameters: scores (4), labels (4)",
    ]


@pytest.mark.parametrize(
    ("build", "text"),
    [
        (lambda x, p, t: x - (x + 1), "x - (x + 1)"),
        (lambda x, p, t: -(x - t), "-(x - t)"),
        (lambda x, p, t: x - 2, "x - 2"),
        (lambda x, p, t: p * (x + t), "p·(x + t)"),
        (lambda x, p, t: x @ (p * p), "x @ (p·p)"),
        (lambda x, p, t: x / (p + 1), "x / (p + 1)"),
        (lambda x, p, t: x[1:, [0, 2]].T, "x[1:, [0, 2]].T"),
        (lambda x, p, t: x[::-1, 0], "x[::-1, 0]"),
        (lambda x, p, t: x.sum(axis=0) + t, "sum(x, axis=0) + t"),
        (lambda x, p, t: x.reshape(-1), "reshape(x, (6,))"),
        (lambda x, p, t: lp.hstack([x, x]), "concatenate([x, x], axis=1)"),
        (
            lambda x, p, t: lp.maximum(x, 0) - lp.min(x, axis=1)[0],
            "maximum(x, 0) - min(x, axis=1)[0]",
        ),
        (lambda x, p, t: lp.sum_largest(x, 2) + lp.norm1(x), "sum_largest(x, 2) + norm1(x)"),
        (lambda x, p, t: x.sum() / (t + 1), "sum(x) / (t + 1)"),
        (lambda x, p, t: lp.abs(x) <= t, "abs(x) <= t"),
        (lambda x, p, t: x[np.ones((2, 3), bool)], "x[mask(2, 3)]"),
    ],
)
def test_expression_text(build, text: str) -> None:
    x = lp.Variable((2, 3), name="x")
    p = lp.Parameter(3, name="p", nonneg=True)
    t = lp.Variable(name="t")
    assert to_text(build(x, p, t)) == text


def test_latex_is_parseable_and_uses_sympy_names() -> None:
    parser = MathTextParser("path")
    x = lp.Variable((2, 3), name="x")
    theta = lp.Parameter(3, name="theta", nonneg=True)
    t = lp.Variable(name="t_1")
    exprs = [
        theta @ x.T,
        x[0, ::2] + 1,
        lp.hstack([x[0], theta]),
        lp.vstack([x[1], theta]),
        x.reshape(-1)[np.ones(6, bool)],
        lp.abs(x) - t,
        lp.pos(x).sum(axis=0),
        lp.maximum(x, 0),
        lp.min(x, axis=1),
        lp.sum_largest(x, 2),
        lp.norm1(x),
        -(x - t) * np.arange(3.0),
        x / (theta + 1),
        x.sum() / t,
        np.ones((2, 2)) @ x,
        x[..., None],
        lp.abs(x) <= t,
        x[0] == theta,
        lp.Maximize(x.sum() / (t + 1)),
    ]
    for e in exprs:
        latex = to_latex(e)
        parser.parse(f"${latex}$")  # raises ValueError on malformed math
    assert to_latex(theta @ x.T) == r"{\theta}^{T} {x}^{T}"
    assert to_latex(x.sum() / t) == r"\frac{\mathrm{sum}\left(x\right)}{t_{1}}"
    assert to_latex(lp.abs(x) <= t) == r"\left|x\right| \leq t_{1}"


def test_latex_escapes_names_with_special_characters() -> None:
    # sympy passed them through: `&` added a column to the array, `%` commented out a row break
    a = lp.Variable(2, name="profit&loss", nonneg=True)
    b = lp.Variable(name="rate%", ub=1)
    latex = lp.Problem(lp.Maximize(a.sum() + b), [a <= b]).to_latex()
    assert r"\text{profit\&loss}" in latex and r"\text{rate\%}" in latex
    # the array's own column separators: objective, constraint, the two variables' bounds
    assert latex.count("&") - latex.count(r"\&") == 4
    parser = MathTextParser("path")
    for name in ("a#b", "x{1}", "c~d", "e$f", "g\\h", "i^j_k&"):
        parser.parse("$" + to_latex(lp.Variable(name=name) + 1) + "$")


def test_problem_latex() -> None:
    prob, _, _ = fscore_like()
    latex = prob.to_latex()
    lines = latex.splitlines()
    assert lines[0] == r"\begin{array}{ll}" and lines[-1] == r"\end{array}"
    assert lines[1] == r"\text{maximize} & {\left(2 \cdot \mathrm{labels}\right)}^{T} z \\"
    assert lines[2].startswith(r"\text{subject to} & \mathrm{sum}\left(z\right) + ")
    assert lines[3] == r" & z \leq t \\"
    parser = MathTextParser("path")
    for line in lines[1:-1]:
        math = line.split("&", 1)[1].rstrip("\\ ").strip()
        parser.parse(f"${math}$")
    assert prob._repr_latex_().startswith("$$\\begin{array}")


def test_import_lpdsl_does_not_import_cvxpy() -> None:
    code = (
        "import sys, lpdsl as lp\n"
        "x = lp.Variable(2, name='x'); p = lp.Parameter(2, name='p')\n"
        "prob = lp.Problem(lp.Minimize(p @ x), [lp.abs(x) <= 1])\n"
        "str(prob); prob.to_latex()\n"
        "assert 'cvxpy' not in sys.modules, 'cvxpy was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_subpackages_are_attributes_after_import_lpdsl() -> None:
    """README: ``lpdsl.metrics.AUCLoss()`` after ``import lpdsl`` (was an AttributeError)."""
    code = (
        "import lpdsl as lp\n"
        "assert lp.metrics.AUCLoss().margin == 0.01\n"
        "assert callable(lp.training.make_loss) and lp.sparse.SparseMatrix\n"
        "assert {'metrics', 'training', 'data'} <= set(dir(lp))\n"
        "try:\n    lp.nonexistent\nexcept AttributeError:\n    pass\n"
        "else:\n    raise AssertionError('lp.nonexistent did not raise')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_adding_a_negative_number_reads_as_subtraction_in_text_and_latex() -> None:
    x = lp.Variable(2, name="x")
    expr = x + (-2.5)
    assert to_text(expr) == "x - 2.5"
    assert to_latex(expr) == "x - 2.5"


def test_negative_terms_read_as_subtraction_in_text_and_latex() -> None:
    """``x - (-p)`` printed as ``x - -p``, and the ratio models' rows as ``a + -1·b``."""
    x, p = lp.Variable(2, name="x"), lp.Parameter(2, name="p")
    cases = [
        (x - (-p), "x - (-p)", r"x - \left(-p\right)"),
        (x + (-1) * p, "x - p", "x - p"),
        (x + (-2.5) * p, "x - 2.5·p", r"x - 2.5 \cdot p"),
        (x + (-1) * (p + x), "x - (p + x)", r"x - \left(p + x\right)"),
        (x + (-1) * ((-3) * p), "x - (-3·p)", r"x - \left(-3 \cdot p\right)"),
        (x - (-3) * p, "x - (-3·p)", r"x - \left(-3 \cdot p\right)"),
    ]
    for expr, text, latex in cases:
        assert to_text(expr) == text
        assert to_latex(expr) == latex


def test_rendering_keeps_digits_and_shows_bounds() -> None:
    """Six significant digits printed ``1.0000004 x`` as ``1 x`` and ``x >= 0.9999999`` as
    ``x >= 1``; array bounds printed as ``lb=array``, and ``to_latex`` left bounds out (a
    reviewing helper)."""
    x = lp.Variable(3, name="x", lb=[-np.inf, 0, -1], ub=[1, np.inf, 2.5])
    y = lp.Variable(2, name="y", nonneg=True, ub=0.9999999)
    z = lp.Variable(name="z")
    problem = lp.Problem(lp.Minimize(x.sum() + y.sum() + 1.0000004 * z), [z >= 1 / 3])
    text = str(problem)
    assert "1.0000004·z" in text and "z >= 0.333333333333" in text
    assert "x (3, lb=[-inf, 0, -1], ub=[1, inf, 2.5]), y (2, nonneg, ub=0.9999999)" in text
    latex = problem.to_latex()
    assert r"\left[-\infty, 0, -1\right] \leq x \leq \left[1, \infty, 2.5\right]" in latex
    assert r"0 \leq y \leq 0.9999999" in latex and r"z \leq" not in latex
    long = lp.Variable(8, name="w", lb=np.arange(8.0), ub=np.arange(8.0) + 1)  # too long to list
    assert r"lb_{w} \leq w \leq ub_{w}" in lp.Problem(lp.Minimize(long.sum()), []).to_latex()
    for line in latex.splitlines()[1:-1]:  # each row of the array is well-formed math
        MathTextParser("path").parse("$" + line.split("&", 1)[1].removesuffix(r" \\") + "$")


def test_rendering_of_exponents_quotients_and_small_matrix_bounds() -> None:
    # LaTeX printed Python's 1e-07 and 2.5e+10; (1/q)·s read "1 / q·s"; a 2x2 bound became
    # the undefined symbol lb_{z}, and str() broke the variables line (a reviewing helper)
    parser = MathTextParser("path")
    z = lp.Variable((2, 2), name="z", lb=np.array([[0, 1], [2, 3]]))
    s = lp.Variable(name="s", nonneg=True)
    q = lp.Parameter(name="q")
    prob = lp.Problem(lp.Minimize(1e-7 * s + z.sum() - 2.5e10), [(1 / q) * s <= 1])
    latex = prob.to_latex()
    assert r"10^{-7} \cdot s" in latex and r"2.5 \cdot 10^{10}" in latex
    assert r"\left[\left[0, 1\right], \left[2, 3\right]\right] \leq z" in latex
    assert "lb_" not in latex
    for line in latex.splitlines()[1:-1]:
        parser.parse("$" + line.split("&", 1)[1].rstrip("\\ ") + "$")
    # a subtracted constant too (x + (-1e-7) printed x - 1e-07: a verifying helper)
    assert to_latex(s + (-1e-7)) == r"s - 10^{-7}"
    assert to_latex(s + (-2.5e10) * q) == r"s - 2.5 \cdot 10^{10} \cdot q"
    text = str(prob)
    assert "(1 / q)·s <= 1" in text
    assert "variables: z (2×2, lb=[[0, 1], [2, 3]]), s (scalar, nonneg)" in text


def test_latex_names_keep_every_underscore_and_space():
    # sympy reads one "_" as a subscript: cost_per_unit came out as cost_{per unit}, "my var"
    # as myvar, lambda_ as \lambda_{} (the same as lambda): a reviewing helper, twentieth pass
    cases = {
        "cost_per_unit": r"\text{cost\_per\_unit}",
        "my var": r"\text{my var}",
        "lambda_": r"\text{lambda\_}",
        "_x": r"\text{\_x}",
        "x_1": "x_{1}",
        "a^b": r"\text{a\textasciicircum{}b}",  # typeset as a power before
        "lambda": r"\lambda",
    }
    for name, want in cases.items():
        assert to_latex(lp.Variable(name=name)) == want


def test_a_scalar_constant_has_a_number():
    assert float(lp.Constant(3.0)) == 3.0
    with pytest.raises(lp.DSLError, match=r"has no number: expressions are symbolic"):
        float(lp.Variable(name="v") + 1)
