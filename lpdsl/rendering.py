"""Render expressions, constraints and problems as readable text and as LaTeX.

Rendering reads only the expression tree (``docs/architecture.md``). Both renderers walk the
tree iteratively (children first, results memoised), so a model built from a long Python
``sum()`` renders without hitting the recursion limit. Operator precedence decides where
parentheses go, so ``(2·labels) @ z`` and ``a - (b + c)`` come out as a reader expects.
Leaf names go through sympy's LaTeX printer, which turns ``theta`` into ``\\theta`` and
``x_1`` into ``x_{1}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from lpdsl.expressions import Expression, Ratio, tensor_numpy, walk

if TYPE_CHECKING:
    from lpdsl.problem import Constraint, Objective, Problem

__all__ = ["key_to_text", "problem_to_latex", "problem_to_text", "to_latex", "to_text"]

# Binding strength of each rendered form: a child weaker than its context gets parentheses.
_ATOM, _POSTFIX, _NEG, _MUL, _ADD = 100, 90, 45, 40, 30

_SENSE_LATEX = {"<=": r"\leq", ">=": r"\geq", "==": "="}
#: Arrays (and index lists) of at most this many entries are written out in full.
_LISTED = 6


# --------------------------------------------------------------------------------------------
# shared helpers


def _number(x: float) -> str:
    """The fewest of 6 to 12 significant digits that read back as ``x`` (else 12): with 6
    always, ``1.0000004 x`` printed as ``1 x`` and ``x >= 0.9999999`` as ``x >= 1``."""
    if not np.isfinite(x):
        return str(x)
    for digits in range(6, 13):
        text = f"{x:.{digits}g}"
        if float(text) == x:
            break
    return text


def _array_text(value: np.ndarray) -> str:
    if value.ndim == 0:
        return _number(float(value))
    if value.size <= _LISTED:  # on one line: a matrix broke the "variables:" line
        text = np.array2string(value, separator=", ", formatter={"float": _number})
        return " ".join(text.split())
    if (value == value.flat[0]).all():
        return f"full({value.shape}, {_number(float(value.flat[0]))})"
    return f"const{value.shape}"


def key_to_text(key: Any) -> str:
    """An indexing key as the user would have typed it (``1:5:2, [0, 3]``)."""
    parts = key if isinstance(key, tuple) else (key,)
    out = []
    for part in parts:
        if isinstance(part, slice):
            start = "" if part.start is None else str(part.start)
            stop = "" if part.stop is None else str(part.stop)
            text = f"{start}:{stop}"
            if part.step is not None:
                text += f":{part.step}"
            out.append(text)
        elif part is None:
            out.append("None")
        elif part is Ellipsis:
            out.append("...")
        else:
            arr = np.asarray(tensor_numpy(part, "index") if hasattr(part, "detach") else part)
            if arr.ndim == 0:
                out.append(str(arr.item()))
            elif arr.dtype == bool:
                out.append(f"mask{arr.shape}")
            elif arr.size <= _LISTED:
                out.append(str(arr.tolist()))
            else:
                out.append(f"<{arr.size} indices>")
    return ", ".join(out)


def _wrap(text: str, prec: int, need: int, open_: str = "(", close: str = ")") -> str:
    return f"{open_}{text}{close}" if prec < need else text


def _constant_prec(node: Expression) -> int:
    """A constant binds like a negation if it is an unnamed negative scalar, else as an atom."""
    neg_scalar = node.shape == () and float(node.attrs["value"]) < 0 and not node.name
    return _NEG if neg_scalar else _ATOM


def _render(
    roots: list[Any],
    render_node: Callable[[Expression, dict[int, tuple[str, int]]], tuple[str, int]],
    limit: int | None = None,
) -> dict[int, tuple[str, int]]:
    """``(text, precedence)`` of every node under ``roots`` by ``id``, children first.

    With ``limit``, every text is cut to that many characters and "…": its first ``limit``
    characters are the full rendering's (a node's text continues each child's), and a shared
    subexpression, whose text doubles at each level that reads it twice, stays short (a
    message about a moving average applied 23 times took 3.6 s to render: a reviewing
    helper's probe, twentieth pass).
    """
    done: dict[int, tuple[str, int]] = {}
    for node in walk(roots):
        text, prec = render_node(node, done)
        if limit is not None and len(text) > limit:
            text = text[:limit] + "…"
        done[id(node)] = text, prec
    return done


# --------------------------------------------------------------------------------------------
# text


def _subtracted_number(node: Expression, fmt: Callable[[float], str] = _number) -> str | None:
    """``"3"`` for an unnamed negative scalar constant ``-3``, so ``x + (-3)`` reads ``x - 3``
    (``fmt`` writes the number: LaTeX's powers of ten, not ``1e-07``)."""
    if node.op == "constant" and node.shape == () and not node.name:
        value = float(node.attrs["value"])
        if value < 0:
            return fmt(-value)
    return None


def _subtrahend(
    node: Expression, fmt: Callable[[float], str] = _number
) -> tuple[str, Expression] | None:
    """``("", e)`` for ``-e``, ``("2", e)`` for ``(-2)·e`` (``("", e)`` for ``(-1)·e``: an
    unnamed negative scalar constant times ``e``), so that ``x + node`` reads ``x - e`` or
    ``x - 2·e`` (the ratio models' rows); ``e`` is parenthesised where it starts with a minus
    (``x - (-p)``, not ``x - -p``)."""
    if node.op == "neg":
        return "", node.args[0]
    if node.op == "mul":
        magnitude = _subtracted_number(node.args[0], fmt)
        if magnitude is not None:
            return ("" if magnitude == "1" else magnitude), node.args[1]
    return None


def _text_node(node: Expression, done: dict[int, tuple[str, int]]) -> tuple[str, int]:
    op = node.op
    args = [done[id(a)] for a in node.args]

    def arg(i: int, need: int) -> str:
        text, prec = args[i]
        return _wrap(text, prec, need)

    if op in ("variable", "parameter"):
        return node.name, _ATOM
    if op == "constant":
        return node.name or _array_text(node.attrs["value"]), _constant_prec(node)
    if op == "add":
        left = arg(0, _ADD)
        right_node = node.args[1]
        magnitude = _subtracted_number(right_node)
        if magnitude is not None:
            return f"{left} - {magnitude}", _ADD
        factor = _subtrahend(right_node)
        if factor is not None:
            text, prec = done[id(factor[1])]
            need = _MUL + 1 if factor[0] else _ADD + 1
            term = _wrap(text, 0 if text.startswith("-") else prec, need)
            return f"{left} - {factor[0] + '·' if factor[0] else ''}{term}", _ADD
        return f"{left} + {arg(1, _ADD)}", _ADD
    if op == "neg":
        inner, prec = args[0]
        inner = f"({inner})" if prec < _MUL or node.args[0].op == "neg" else inner
        return f"-{inner}", _NEG
    if op in ("mul", "div", "matmul"):
        symbol = {"mul": "·", "div": " / ", "matmul": " @ "}[op]
        # a quotient times something is parenthesised: (1 / q)·s, not 1 / q·s, which reads
        # as 1 / (q·s) (a reviewing helper's note)
        quotient = op != "div" and node.args[0].op == "div"
        need_left = _MUL + 1 if op == "matmul" or quotient else _MUL
        left = arg(0, need_left)
        right_text, right_prec = args[1]
        right = _wrap(right_text, right_prec if right_prec != _NEG else 0, _MUL + 1)
        return f"{left}{symbol}{right}", _MUL
    if op in ("sum", "max", "min"):
        axis = node.attrs.get("axis")
        suffix = "" if axis is None else f", axis={axis}"
        return f"{op}({args[0][0]}{suffix})", _ATOM
    if op == "transpose":
        return f"{arg(0, _POSTFIX)}.T", _POSTFIX
    if op == "reshape":
        return f"reshape({args[0][0]}, {node.attrs['shape']})", _ATOM
    if op == "index":
        return f"{arg(0, _POSTFIX)}[{key_to_text(node.attrs['key'])}]", _POSTFIX
    if op == "concatenate":
        items = ", ".join(a[0] for a in args)
        return f"concatenate([{items}], axis={node.attrs['axis']})", _ATOM
    if op == "sum_largest":
        return f"sum_largest({args[0][0]}, {node.attrs['k']})", _ATOM
    # abs, pos, maximum, minimum, norm1 and any op added later: a function call.
    return f"{op}({', '.join(a[0] for a in args)})", _ATOM


def to_text(
    obj: Expression | Ratio | Constraint | Objective | Problem, limit: int | None = None
) -> str:
    """Plain-text rendering of an expression, ratio, constraint, objective or problem; with
    ``limit`` (for messages), each part is cut after that many characters."""
    from lpdsl.problem import Constraint, Objective, Problem

    if isinstance(obj, Problem):
        return problem_to_text(obj)
    if isinstance(obj, Objective):
        shown = "" if obj.estimate is None else f"  (estimate {to_text(obj.estimate, limit)})"
        return f"{obj.sense_word} {to_text(obj.expr, limit)}{shown}"
    if isinstance(obj, Constraint):
        done = _render([obj.lhs, obj.rhs], _text_node, limit)
        return f"{done[id(obj.lhs)][0]} {obj.sense} {done[id(obj.rhs)][0]}"
    if isinstance(obj, Ratio):
        done = _render([obj], _text_node, limit)
        num = _wrap(*done[id(obj.num)], _MUL)
        return f"{num} / {_wrap_operand(*done[id(obj.den)], _MUL + 1)}"
    if not isinstance(obj, Expression):
        raise TypeError(f"cannot render {type(obj).__name__}")
    return _render([obj], _text_node, limit)[id(obj)][0]


# binding strength each side of a binary operator needs (as in _text_node)
_BINARY_NEEDS = {
    "+": (_ADD, _ADD),
    "-": (_ADD, _ADD + 1),
    "*": (_MUL, _MUL + 1),
    "/": (_MUL, _MUL + 1),
    "@": (_MUL + 1, _MUL + 1),
}


def binary_text(
    left: Expression | Ratio, symbol: str, right: Expression | Ratio, width: int = 48
) -> str:
    """``left symbol right`` for messages, each side parenthesised where precedence needs it
    (``sum(abs(x)) / (sum(x) + 5)``, not ``... / sum(x) + 5``) and cut to ``width``."""
    need_left, need_right = _BINARY_NEEDS[symbol]
    left_text = _operand_text(left, need_left, width)
    return f"{left_text} {symbol} {_operand_text(right, need_right, width)}"


def _operand_text(expr: Expression | Ratio, need: int, width: int) -> str:
    if isinstance(expr, Ratio):
        text, prec = to_text(expr, width), _MUL
    else:
        text, prec = _render([expr], _text_node, width)[id(expr)]
    if len(text) > width:
        text = text[: width - 1] + "…"
    return _wrap_operand(text, prec, need)


def _wrap_operand(text: str, prec: int, need: int) -> str:
    """:func:`_wrap` for an operand, a negation right of ``*``, ``/`` or ``@`` in parentheses:
    ``x / -y`` reads as ``x / (-y)``."""
    return _wrap(text, 0 if prec == _NEG and need > _MUL else prec, need)


def _leaf_declaration(leaf: Expression) -> str:
    shape = "scalar" if leaf.shape == () else "×".join(str(d) for d in leaf.shape)
    extras = []
    if leaf.attrs.get("nonneg"):
        extras.append("nonneg")
    for which in ("lb", "ub"):
        bound = leaf.attrs.get(which)
        if bound is None:
            continue
        finite = bound[np.isfinite(bound)]
        if leaf.attrs.get("nonneg") and which == "lb" and finite.size and not finite.any():
            continue
        extras.append(f"{which}={_array_text(_uniform(bound))}")
    tail = f", {', '.join(extras)}" if extras else ""
    return f"{leaf.name} ({shape}{tail})"


def _uniform(bound: np.ndarray) -> np.ndarray:
    """A bound whose entries are all equal as that one number (0-d)."""
    return bound.reshape(-1)[0] if bound.size and (bound == bound.flat[0]).all() else bound


def _bounds_latex(leaf: Expression) -> str | None:
    """``lb \\leq x \\leq ub`` for a variable with a finite bound, else ``None``."""
    sides = []
    for which in ("lb", "ub"):
        bound = leaf.attrs.get(which)
        if bound is not None and not np.isfinite(bound).any():
            bound = None
        if bound is None:
            sides.append(None)
            continue
        value = np.asarray(_uniform(bound))
        # an array too long to list gets a name of its own: both sides as C_{8} read as x fixed
        shown = value.ndim == 0 or (value.ndim <= 2 and value.size <= _LISTED)
        sides.append(_latex_array(value, "" if shown else f"{which}_{leaf.name}"))
    if sides == [None, None]:
        return None
    name = _latex_name(leaf.name)
    lo, hi = sides
    if lo is None:
        return rf"{name} \leq {hi}"
    return rf"{lo} \leq {name}" + ("" if hi is None else rf" \leq {hi}")


def problem_to_text(problem: Problem) -> str:
    """Multi-line text: the objective, the constraints, then the leaves it uses."""
    lines = [to_text(problem.objective)]
    if problem.constraints:
        lines.append("subject to")
        lines.extend(f"    {to_text(c)}" for c in problem.constraints)
    variables = problem.variables()
    parameters = problem.parameters()
    if variables:
        lines.append("variables: " + ", ".join(_leaf_declaration(v) for v in variables))
    if parameters:
        lines.append("parameters: " + ", ".join(_leaf_declaration(p) for p in parameters))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# LaTeX


#: LaTeX's special characters, escaped for text mode. A name holding any of ``&%$#{}~\``
#: is set as escaped text: sympy passes them through verbatim, and ``profit&loss`` then added
#: a column to the model's ``array`` (``rate%`` commented out its row break).
_TEXT_ESCAPES = {
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "{": r"\{",
    "}": r"\}",
    "_": r"\_",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "\\": r"\textbackslash{}",
}


def _latex_name(name: str) -> str:
    import sympy

    # sympy reads one "_" as a subscript: with more, or with a space, it lost characters
    # (cost_per_unit as cost_{per unit}, typeset "cost" sub "perunit": a reviewing helper)
    if (
        any(ch in name for ch in "&%$#{}~\\ ^")  # (a^b: a power)
        or name.count("_") > 1
        or name.startswith("_")
        or name.endswith("_")  # lambda_ read as lambda with an empty subscript
    ):
        return r"\text{" + "".join(_TEXT_ESCAPES.get(ch, ch) for ch in name) + "}"
    text = sympy.latex(sympy.Symbol(name))
    if len(name) > 1 and text.isalpha():  # multi-letter words upright, as in typeset math
        return rf"\mathrm{{{text}}}"
    return text


def _latex_number(x: float) -> str:
    """``x`` as LaTeX: ``\\infty``, or a power of ten where the text has an exponent
    (``2.5 \\cdot 10^{10}``, not Python's ``2.5e+10``)."""
    if not np.isfinite(x):
        return ("-" if x < 0 else "") + r"\infty"
    text = _number(x)
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    power = rf"10^{{{int(exponent)}}}"
    if mantissa.lstrip("-") == "1":
        return mantissa.replace("1", "") + power
    return rf"{mantissa} \cdot {power}"


def _latex_array(value: np.ndarray, name: str) -> str:
    if name:
        return _latex_name(name)
    if value.ndim == 0:
        return _latex_number(float(value))
    if value.ndim == 1 and value.size <= _LISTED:
        return r"\left[" + ", ".join(_latex_number(float(v)) for v in value) + r"\right]"
    if value.ndim == 2 and value.size <= _LISTED:  # a small matrix, row by row (as numpy
        # prints it; matplotlib's mathtext, which the tests parse with, has no bmatrix)
        rows = (
            r"\left[" + ", ".join(_latex_number(float(v)) for v in r) + r"\right]" for r in value
        )
        return r"\left[" + ", ".join(rows) + r"\right]"
    if value.size and (value == value.flat[0]).all():
        dims = r" \times ".join(str(d) for d in value.shape)
        scale = float(value.flat[0])
        ones = rf"\mathbf{{1}}_{{{dims}}}"
        return ones if scale == 1 else rf"{_latex_number(scale)} \cdot {ones}"
    dims = r" \times ".join(str(d) for d in value.shape)
    return rf"C_{{{dims}}}"


def _latex_key(key: Any) -> str:
    text = key_to_text(key).replace("...", r"\ldots").replace("<", "").replace(">", "")
    return text.replace("mask(", r"\mathrm{mask}(").replace(" indices", r"\ \mathrm{indices}")


def _latex_node(node: Expression, done: dict[int, tuple[str, int]]) -> tuple[str, int]:
    op = node.op
    args = [done[id(a)] for a in node.args]
    lp, rp = r"\left(", r"\right)"

    def arg(i: int, need: int) -> str:
        text, prec = args[i]
        return _wrap(text, prec, need, lp, rp)

    if op in ("variable", "parameter"):
        return _latex_name(node.name), _ATOM
    if op == "constant":
        return _latex_array(node.attrs["value"], node.name), _constant_prec(node)
    if op == "add":
        left = arg(0, _ADD)
        right_node = node.args[1]
        magnitude = _subtracted_number(right_node, _latex_number)
        if magnitude is not None:
            return f"{left} - {magnitude}", _ADD
        factor = _subtrahend(right_node, _latex_number)
        if factor is not None:
            text, prec = done[id(factor[1])]
            need = _MUL + 1 if factor[0] else _ADD + 1
            term = _wrap(text, 0 if text.startswith("-") else prec, need, lp, rp)
            scale = factor[0] + r" \cdot " if factor[0] else ""
            return f"{left} - {scale}{term}", _ADD
        return f"{left} + {_wrap(args[1][0], args[1][1], _ADD if args[1][1] != _NEG else 99)}", (
            _ADD
        )
    if op == "neg":
        inner, prec = args[0]
        inner = f"{lp}{inner}{rp}" if prec < _MUL or node.args[0].op == "neg" else inner
        return f"-{inner}", _NEG
    if op == "mul":
        symbol = r" \odot " if node.args[0].ndim and node.args[1].ndim else r" \cdot "
        right_text, right_prec = args[1]
        right = _wrap(right_text, right_prec if right_prec != _NEG else 0, _MUL + 1, lp, rp)
        return f"{arg(0, _MUL)}{symbol}{right}", _MUL
    if op == "div":
        return rf"\frac{{{args[0][0]}}}{{{args[1][0]}}}", _ATOM
    if op == "matmul":
        left = arg(0, _POSTFIX)
        if node.args[0].ndim == 1:
            left = f"{{{left}}}^{{T}}"
        right_text, right_prec = args[1]
        return f"{left} {_wrap(right_text, right_prec, _MUL + 1, lp, rp)}", _MUL
    if op in ("sum", "max", "min"):
        fn = r"\mathrm{sum}" if op == "sum" else rf"\{op}"
        axis = node.attrs.get("axis")
        sub = "" if axis is None else rf"_{{\mathrm{{axis}}={axis}}}"
        return rf"{fn}{sub}{lp}{args[0][0]}{rp}", _ATOM
    if op == "transpose":
        return f"{{{arg(0, _POSTFIX)}}}^{{T}}", _POSTFIX
    if op == "reshape":
        dims = r" \times ".join(str(d) for d in node.attrs["shape"]) or "1"
        return rf"\mathrm{{reshape}}_{{{dims}}}{lp}{args[0][0]}{rp}", _ATOM
    if op == "index":
        return f"{{{arg(0, _POSTFIX)}}}_{{[{_latex_key(node.attrs['key'])}]}}", _POSTFIX
    if op == "concatenate":
        items = ", ".join(a[0] for a in args)
        return rf"\mathrm{{concat}}_{{{node.attrs['axis']}}}{lp}{items}{rp}", _ATOM
    if op == "abs":
        return rf"\left|{args[0][0]}\right|", _ATOM
    if op == "pos":
        return rf"{lp}{args[0][0]}{rp}_{{+}}", _ATOM
    if op == "norm1":
        return rf"\left\|{args[0][0]}\right\|_{{1}}", _ATOM
    if op in ("maximum", "minimum"):
        fn = r"\max" if op == "maximum" else r"\min"
        return rf"{fn}{lp}{', '.join(a[0] for a in args)}{rp}", _ATOM
    if op == "sum_largest":
        return rf"\mathrm{{sum\_largest}}_{{{node.attrs['k']}}}{lp}{args[0][0]}{rp}", _ATOM
    return rf"\mathrm{{{op}}}{lp}{', '.join(a[0] for a in args)}{rp}", _ATOM


def to_latex(obj: Expression | Ratio | Constraint | Objective | Problem) -> str:
    """LaTeX (math mode, without ``$``) of an expression, ratio, constraint, objective or
    problem."""
    from lpdsl.problem import Constraint, Objective, Problem

    if isinstance(obj, Problem):
        return problem_to_latex(obj)
    if isinstance(obj, Objective):
        return rf"{_sense_word(obj.sense)} \quad {to_latex(obj.expr)}{_estimate_latex(obj)}"
    roots: list[Any]
    if isinstance(obj, Constraint):
        roots = [obj.lhs, obj.rhs]
    elif isinstance(obj, (Ratio, Expression)):
        roots = [obj]
    else:
        raise TypeError(f"cannot render {type(obj).__name__}")
    done = _render(roots, _latex_node)
    if isinstance(obj, Constraint):
        return f"{done[id(obj.lhs)][0]} {_SENSE_LATEX[obj.sense]} {done[id(obj.rhs)][0]}"
    if isinstance(obj, Ratio):
        return rf"\frac{{{done[id(obj.num)][0]}}}{{{done[id(obj.den)][0]}}}"
    return done[id(obj)][0]


def _estimate_latex(objective: Any) -> str:
    """The objective's estimate of its ratio (the Charnes–Cooper LP's shift), if any."""
    if objective.estimate is None:
        return ""
    return rf" \quad (\text{{estimate }} {to_latex(objective.estimate)})"


def _sense_word(sense: str) -> str:
    """The objective's word in LaTeX, one spelling for an objective and a whole problem."""
    return r"\text{maximize}" if sense == "max" else r"\text{minimize}"


def problem_to_latex(problem: Problem) -> str:
    """The problem as an ``array`` environment: objective, then one constraint per row."""
    objective = problem.objective
    rows = [
        rf"{_sense_word(objective.sense)} & {to_latex(objective.expr)}{_estimate_latex(objective)}"
    ]
    bounds = (_bounds_latex(v) for v in problem.variables())
    body = [to_latex(c) for c in problem.constraints] + [b for b in bounds if b is not None]
    for i, row in enumerate(body):
        label = r"\text{subject to}" if i == 0 else ""
        rows.append(rf"{label} & {row}")
    return "\\begin{array}{ll}\n" + " \\\\\n".join(rows) + "\n\\end{array}"
