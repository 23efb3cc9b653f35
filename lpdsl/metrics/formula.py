"""Formulas over TP, FP, FN, TN parsed into linear-fractional form (paper §2.4; docs/metrics.md).

A formula is parsed into sympy (never evaluated: :func:`_parse` walks Python's own syntax
tree and admits numbers, names and ``+ - * / **``) over ``TP, FP, FN, TN`` (also
the rates of :data:`DERIVED`, e.g. ``precision``, ``recall``, ``specificity``, and the
user's named constants); ``FN = n_pos -
TP`` and ``TN = n_neg - FP`` reduce numerator and denominator to affine functions of ``(TP,
FP)`` whose coefficients are polynomials in the label counts ``n_pos`` and ``n_neg``
(:func:`parse_ratio`). A constraint such as ``"recall >= 0.8"`` becomes one linear row in
``(TP, FP)`` (:func:`parse_constraint`). :class:`~lpdsl.metrics.ratio.RatioMetricLoss` turns
both into its LP.
"""

from __future__ import annotations

import ast
import difflib
import math
import numbers
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sympy

from lpdsl.errors import DSLError
from lpdsl.validation import as_written

TP, FP, FN, TN = sympy.symbols("TP FP FN TN", nonnegative=True)
N_POS, N_NEG = sympy.symbols("n_pos n_neg", nonnegative=True)
COUNTS = {"TP": TP, "FP": FP, "FN": FN, "TN": TN}
#: The rates a formula may name, under the names practitioners use (a user who wrote
#: "sensitivity" was offered "specificity", its opposite, as the closest known name, and
#: "fpr" the count "FP": a probing helper, 26th pass).
DERIVED = {
    "precision": TP / (TP + FP),
    "ppv": TP / (TP + FP),
    "recall": TP / (TP + FN),
    "tpr": TP / (TP + FN),
    "sensitivity": TP / (TP + FN),
    "specificity": TN / (TN + FP),
    "tnr": TN / (TN + FP),
    "selectivity": TN / (TN + FP),
    "npv": TN / (TN + FN),
    "fpr": FP / (FP + TN),
    "fnr": FN / (FN + TP),
    "fdr": FP / (FP + TP),
    "accuracy": (TP + TN) / (TP + FP + FN + TN),
}
#: Rates that are better lower: a loss maximises its formula, so one of these alone as the
#: formula is refused with ``1 - name`` (constraints such as ``"fpr <= 0.1"`` take them).
LOWER_IS_BETTER = ("fpr", "fnr", "fdr")
RESERVED = {*COUNTS, *DERIVED, "n_pos", "n_neg"}
_REDUCE = {FN: N_POS - TP, TN: N_NEG - FP}
_SENSES = ("<=", ">=", "==")


def _constants(constants: dict[str, Any]) -> dict[str, sympy.Expr]:
    out = {}
    for name, value in constants.items():
        if name in RESERVED:
            raise DSLError(
                f"Expected constant names other than the reserved {sorted(RESERVED)} but got "
                f"`{name}`"
            )
        if not name.isidentifier():
            raise DSLError(f"Expected a constant name to be an identifier but got {name!r}")
        # any real number (numpy's, Fraction, ...) as FBetaLoss(np.float32(2)) takes it; not
        # a bool (np.bool_ is no numbers.Real)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise DSLError(
                f"Expected argument `{name}` to be a finite real number but got {value!r}"
            )
        if isinstance(value, numbers.Rational):  # int, np.int64, Fraction: exact
            out[nfkc(name)] = sympy.Rational(int(value.numerator), int(value.denominator))
            continue
        number = as_written(value)
        if not math.isfinite(number):
            raise DSLError(
                f"Expected argument `{name}` to be a finite real number but got {value!r}"
            )
        out[nfkc(name)] = sympy.Rational(repr(number))  # 0.8 is 4/5 exactly, as written
    return out


def nfkc(name: str) -> str:
    """``name`` as Python's parser reads an identifier (NFKC: full-width ``ａ`` is ``a``)."""
    return unicodedata.normalize("NFKC", name)


def _parse(text: str, constants: dict[str, sympy.Expr], what: str) -> sympy.Expr:
    """Parse ``text`` over the counts, derived ratios and ``constants``.

    The text is read by Python's own parser (:mod:`ast`) and converted node by node: only
    numbers, names, ``+ - * / **`` and parentheses are accepted, and nothing is evaluated
    (``sympy.parse_expr`` calls ``eval``, so a formula such as
    ``"__import__('os').system(...)"`` ran before it was refused).
    """
    if not isinstance(text, str) or not text.strip():
        raise DSLError(f"Expected the {what} to be a non-empty string but got {text!r}")
    try:
        tree = ast.parse(_one_line(text), mode="eval")
    except SyntaxError as err:
        raise DSLError(
            f"could not parse the {what} {text!r}: {err.msg} (it takes numbers, names, "
            "+ - * / ** and parentheses)"
        ) from None
    except (RecursionError, MemoryError):
        raise _too_long(text, what) from None
    local: dict[str, sympy.Expr] = {**COUNTS, **DERIVED, **constants}
    try:
        expr = _to_sympy(tree.body, local, text, what)
    except RecursionError:  # one level per binary operator: 1,000 terms overflowed the stack
        raise _too_long(text, what) from None
    degree = _degree(expr)
    if degree > MAX_DEGREE:
        raise DSLError(
            f"the {what} {text!r} has degree {degree} in its names over one common "
            f"denominator (above {MAX_DEGREE}); an LP needs a ratio of affine combinations of "
            "the counts"
        )
    unknown = sorted(str(s) for s in expr.free_symbols if s not in (TP, FP, FN, TN))
    if unknown:
        name = unknown[0]
        if name in ("n_pos", "n_neg"):  # reserved: a constant of that name is refused
            advice = "write n_pos as TP + FN and n_neg as FP + TN"
        else:
            known = ["TP", "FP", "FN", "TN", *DERIVED, *constants]
            by_lower = {k.lower(): k for k in known}  # "fn" is FN
            close = [by_lower[k] for k in difflib.get_close_matches(name.lower(), by_lower, n=1)]
            advice = f"did you mean {close[0]!r}? Or " if close else ""
            advice += f"pass a constant as a keyword argument (RatioMetricLoss(..., {name}=1.0))"
        raise DSLError(
            f"the {what} {text!r} uses unknown name(s) {unknown}; it may use TP, FP, FN, TN, "
            f"{sorted(DERIVED)} and constants passed as keyword arguments: {advice}"
        )
    if expr.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        # e.g. TP/(TP-TP): sympy cancels the denominator to 0 and returns zoo*TP, which used to
        # fail at the first call with "cannot express the coefficient zoo"
        raise DSLError(
            f"the {what} {text!r} divides by zero (it simplifies to {expr}); check its denominator"
        )
    return sympy.nsimplify(expr, rational=True)


def _one_line(text: str) -> str:
    """``text`` on one line: newlines and indentation are whitespace (a triple-quoted formula
    was "invalid syntax"). Comments are cut line by line first, so that a ``#`` cannot hide
    the lines after it, and a line-continuation backslash is dropped."""
    lines = (line.split("#", 1)[0].rstrip() for line in text.splitlines())
    return " ".join(line.removesuffix("\\") for line in lines).strip()


def _too_long(text: str, what: str) -> DSLError:
    """The error for a formula too long or too deeply nested to convert."""
    shown = text if len(text) <= 80 else f"{text[:60]!r}... ({len(text)} characters)"
    return DSLError(
        f"the {what} {shown} is too long or too deeply nested to convert (Python's recursion "
        "limit was reached); simplify it, e.g. collect repeated terms (0.001*TP + 0.001*TP "
        "is 0.002*TP)"
    )


#: A name in a formula: an identifier, also a non-ASCII one (``β``), as Python's own parser
#: takes it (NFKC-normalised where it is compared, as Python does)
NAME = re.compile(r"(?!\d)\w+")
#: Largest degree of a parsed formula, counting a quotient's numerator and denominator
#: (sympy's cancel expands the rational function: ((TP+FP+FN+1)**8)**8)**8 hung it).
MAX_DEGREE = 32
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
#: Largest integer exponent of ``**`` (an LP needs degree <= 1 anyway; this keeps sympy from
#: expanding ``TP**10**9`` before the degree check refuses it).
MAX_POWER = 8
#: The largest coefficient a formula may hold (after the division by its denominator's
#: largest): the solver refuses data beyond ~1.3e150 (its squares must not overflow), and
#: "10**160*TP/(...)" was accepted, then refused at every batch as if the scores were at fault
#: (a verifying helper, 21st pass).
COEFF_LIMIT = 1e150
#: A power of a number may span at most this many decades (float64 holds ~1e-308..1e308; the
#: coefficients' own range check follows the division by the largest one).
FLOAT64_DECADES = 600


def _as_float(value: int) -> float:
    """An int as a float, ``inf`` where it has no float (the LP's coefficients are floats)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _degree(expr: Any) -> int:
    """An upper bound on the total degree of ``expr``'s numerator plus denominator once it is
    brought over one denominator, without expanding it (:func:`_degrees`)."""
    return sum(_degrees(expr))


def _degrees(expr: Any) -> tuple[int, int]:
    """Upper bounds on the degrees of ``expr``'s numerator and denominator over one common
    denominator: products add both, integer powers multiply them (a negative one swaps them),
    and a sum's denominator is the product of its terms' (a sum of k fractions over different
    denominators has degree ~2k: counted as the larger term's, ``sympy.cancel`` of 20 to 39
    such terms ran 12 s to minutes before refusing it, a reviewing helper's probe)."""
    if expr.is_Symbol:
        return 1, 0
    if expr.is_number:
        return 0, 0
    if expr.is_Add:
        parts = [_degrees(a) for a in expr.args]
        den = sum(d for _, d in parts)
        return max(n + den - d for n, d in parts), den
    if expr.is_Mul:
        parts = [_degrees(a) for a in expr.args]
        return sum(n for n, _ in parts), sum(d for _, d in parts)
    if expr.is_Pow and expr.exp.is_Integer:
        n, d = _degrees(expr.base)
        k = int(expr.exp)
        return (n * k, d * k) if k >= 0 else (d * -k, n * -k)
    return sum(_degree(a) for a in expr.args), 0


def _to_sympy(node: ast.AST, local: dict[str, sympy.Expr], text: str, what: str) -> Any:
    """One node of a parsed formula as a sympy expression, or a DSLError naming it."""
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _to_sympy(node.left, local, text, what)
        return _BINARY[type(node.op)](left, _to_sympy(node.right, local, text, what))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
        power = node.right
        if isinstance(power, ast.UnaryOp) and isinstance(power.op, (ast.UAdd, ast.USub)):
            power = power.operand
        if not (isinstance(power, ast.Constant) and type(power.value) is int):
            raise DSLError(
                f"the {what} {text!r}: the exponent of {ast.unparse(node)!r} must be an integer "
                "written as a number (a name or an expression is not evaluated there)"
            )
        base = _to_sympy(node.left, local, text, what)
        if base.is_number:
            # a power of a number is a number: its size, not its degree, is what to bound
            # ("10**30*TP/(...)" was refused as "above 8", a degree that a constant has not)
            decades = abs(float(sympy.log(abs(base), 10))) if base != 0 else 0.0
            if power.value * decades > FLOAT64_DECADES:
                raise DSLError(
                    f"the {what} {text!r}: the number {ast.unparse(node)!r} is beyond "
                    "float64's range, in which the LP's coefficients are computed"
                )
        elif power.value > MAX_POWER:
            raise DSLError(
                f"the {what} {text!r}: the exponent of {ast.unparse(node)!r} is above "
                f"{MAX_POWER}; an LP needs a ratio of affine combinations of the counts"
            )
        return base ** _to_sympy(node.right, local, text, what)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = _to_sympy(node.operand, local, text, what)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        if not math.isfinite(node.value if type(node.value) is float else _as_float(node.value)):
            raise DSLError(f"the {what} {text!r} holds the non-finite number {node.value!r}")
        if node.value == 0.0 and type(node.value) is float:  # 1e-600 reads as 0.0
            written = ast.get_source_segment(_one_line(text), node) or ""
            if any(d in "123456789" for d in written.lower().split("e")[0]):
                raise DSLError(
                    f"the {what} {text!r} holds the number {written}, below float64's range "
                    "(it reads as 0), in which the LP's coefficients are computed"
                )
        return sympy.Rational(repr(node.value))  # 0.8 is 4/5 exactly, as the user wrote it
    if isinstance(node, ast.Name):
        return local.get(node.id, sympy.Symbol(node.id))  # unknown names are reported later
    hint = " (use ** for powers)" if isinstance(getattr(node, "op", None), ast.BitXor) else ""
    raise DSLError(
        f"Expected the {what} {text!r} to be an arithmetic expression of numbers, names, "
        f"+ - * / ** and parentheses, but it contains {ast.unparse(node)!r}{hint}"
    )


@dataclass(frozen=True)
class Affine:
    """``c0 + c_tp·TP + c_fp·FP`` with coefficients that are polynomials in (n_pos, n_neg)."""

    c0: sympy.Expr
    c_tp: sympy.Expr
    c_fp: sympy.Expr

    @staticmethod
    def of(expr: sympy.Expr, text: str, role: str) -> Affine:
        """Decompose ``expr`` (already reduced to TP, FP, n_pos, n_neg) or raise DSLError."""
        try:
            poly = sympy.Poly(sympy.expand(expr), TP, FP)
        except sympy.PolynomialError as err:
            raise DSLError(
                f"{text!r} is not a ratio of affine combinations of TP, FP, FN, TN: its "
                f"{role} {expr} is not polynomial in the counts"
            ) from err
        if poly.total_degree() > 1 and role == "row":
            raise DSLError(
                f"the constraint {text!r} is not linear in the counts once its denominators "
                f"are multiplied through: its row {sympy.factor(expr)} (with FN = n_pos - TP, "
                f"TN = n_neg - FP) has degree {poly.total_degree()}; compare a ratio with a "
                "constant or with counts ('recall >= 0.8', 'TP >= 0.8*(TP + FN)'), or two "
                "ratios over the same denominator"
            )
        if poly.total_degree() > 1:
            raise DSLError(
                f"{text!r} is not a ratio of affine combinations of TP, FP, FN, TN: its "
                f"{role} {sympy.factor(expr)} (with FN = n_pos - TP, TN = n_neg - FP) has "
                f"degree {poly.total_degree()} in the counts; an LP needs "
                "(a·TP + b·FP + c·FN + d·TN + e) / (a'·TP + ... + e')"
            )
        affine = Affine(
            sympy.expand(poly.coeff_monomial(1)),
            sympy.expand(poly.coeff_monomial(TP)),
            sympy.expand(poly.coeff_monomial(FP)),
        )
        for c in affine.coeffs:
            # exact arithmetic: 1e300*1e300 is a finite rational, but no float (it was inf, or
            # a raw OverflowError at the first call); 1e-200*1e-200 is no float either (0.0)
            off = [k for k in _float_terms(c).values() if not _is_float(k)]
            if off:
                raise DSLError(
                    f"the {'constraint' if role == 'row' else 'formula'} {text!r} holds a "
                    f"coefficient {sympy.Float(off[0], 3)} beyond float range in its {role} "
                    "(divided through by its denominator's largest coefficient; the LP takes "
                    f"coefficients from 2.2e-308 to {COEFF_LIMIT:.0e}); write it with "
                    + ("smaller" if abs(float(off[0])) > 1.0 else "larger")
                    + " constants"
                )
        return affine

    def negated(self) -> Affine:
        """``-self``."""
        return Affine(*(sympy.expand(-c) for c in self.coeffs))

    def has_counts(self) -> bool:
        """Whether the expression depends on the prediction (TP or FP)."""
        return self.c_tp != 0 or self.c_fp != 0

    def numeric(self) -> Callable[[Any, Any], tuple[Any, Any, Any]]:
        """``f(n_pos, n_neg) -> (c0, c_tp, c_fp)`` (works on floats and tensors).

        The coefficients are floats: lambdify kept sympy's exact integers, and ``10**30 *
        tp`` on a tensor raised "OverflowError: int too big to convert".
        """
        terms = [[(float(k), i, j) for (i, j), k in _float_terms(c).items()] for c in self.coeffs]

        def evaluate(n_pos: Any, n_neg: Any) -> tuple[Any, Any, Any]:
            return tuple(  # type: ignore[return-value]
                sum((k * n_pos**i * n_neg**j for k, i, j in t), 0.0) for t in terms
            )

        return evaluate

    @property
    def coeffs(self) -> tuple[sympy.Expr, sympy.Expr, sympy.Expr]:
        return (self.c0, self.c_tp, self.c_fp)


def _float_terms(c: sympy.Expr) -> dict[tuple[int, int], sympy.Rational]:
    """A polynomial in ``(n_pos, n_neg)`` as ``{(i, j): coefficient of n_pos^i n_neg^j}``."""
    return {m: sympy.Rational(k) for m, k in sympy.Poly(c, N_POS, N_NEG).terms() if k != 0}


def _is_float(k: sympy.Rational) -> bool:
    """Whether ``k`` has a normal float64 of its own (0.0 only for 0) within ``COEFF_LIMIT``:
    a subnormal one (1e-310) was accepted, then every batch ended MAX_ITER (a probing
    helper, 25th pass)."""
    value = abs(float(k))
    return value <= COEFF_LIMIT and (value >= sys.float_info.min or k == 0)


def parse_ratio(formula: str, constants: dict[str, Any]) -> tuple[Affine, Affine]:
    """Parse a metric formula into affine numerator and denominator in (TP, FP).

    Raises:
        DSLError: if the formula does not parse, uses unknown names, or is not a ratio of
            affine combinations of the counts.
    """
    expr = _parse(formula, _constants(constants), "formula")
    reduced = sympy.cancel(sympy.together(expr.subs(_REDUCE)))
    num, den = sympy.fraction(reduced)
    if _mean_sign(den) < 0:  # cancel() may negate both: (TN+1)/(TN+FN+1) came out over -(...)
        num, den = -num, -den
    # cancel() clears denominators: with beta = 1/3 (the float 0.333..., an exact rational over
    # 10^16) F-beta's denominator came out as 1.1e31 n_pos + 1e32 TP + 1e32 FP, so the
    # Charnes-Cooper t = 1/den was ~1e-32 and every batch ended MAX_ITER. The ratio is the same
    # over the denominator's largest coefficient (as constraint rows, _unit_coefficients).
    scale = _largest_coefficient(den)
    num, den = sympy.expand(num / scale), sympy.expand(den / scale)
    return Affine.of(num, formula, "numerator"), Affine.of(den, formula, "denominator")


def _mean_sign(den: sympy.Expr) -> int:
    """The sign of ``den``'s mean over the box ``0 <= TP <= n_pos``, ``0 <= FP <= n_neg``, at
    a few batch sizes (the first nonzero). The model needs ``den > 0`` where the predictions
    meet the constraints, which this cannot see: ``RatioMetricLoss`` turns both parts over
    where ``den`` is negative on every prediction that meets them (``TP / (TN - 2)`` with
    ``"TN >= 3"``); a ``den`` of either sign there is refused per batch."""
    for n_pos, n_neg in ((1, 1), (2, 3), (5, 2)):
        at = {TP: sympy.Rational(n_pos, 2), FP: sympy.Rational(n_neg, 2), N_POS: n_pos}
        value = sympy.sympify(den).subs({**at, N_NEG: n_neg})
        if value.is_number and value != 0:
            return 1 if value > 0 else -1
    return 1


@dataclass(frozen=True)
class LinearRow:
    """A user constraint ``row >= 0`` (``sense=">="``) or ``row == 0`` (``"=="``).

    ``den`` is the denominator the constraint was multiplied through by (a polynomial in
    ``TP, FP, FN, TN`` with nonnegative coefficients, ``1`` for a constraint without a
    ratio): where it is 0 for every prediction the constraint is undefined (``"recall >=
    0.9"`` on a batch without positives), not vacuously true.
    """

    text: str
    row: Affine
    sense: str
    den: sympy.Expr = sympy.S.One


#: Two comparisons joined in one constraint string, and a strict one (neither is one LP row).
_JOINED = re.compile(r"\band\b|\bor\b|&|\||,")
_STRICT = re.compile(r"(?<![<>=!])[<>](?!=)")


def parse_constraint(text: str, constants: dict[str, Any]) -> LinearRow:
    """Parse ``"lhs <= rhs"`` / ``">="`` / ``"=="``; ratios are cross-multiplied.

    A ratio's denominator must be a nonnegative combination of the counts (as in precision
    and recall) so that multiplying through keeps the direction of the inequality.

    Raises:
        DSLError: on a missing or strict comparison, or a row that is not linear.
    """
    if not isinstance(text, str):
        raise DSLError(f"Expected each constraint to be a string but got {text!r}")
    parts = re.split(r"(<=|>=|==)", text)
    # (a second, strict or joined comparison beside one of them: "recall > 0.8 and FP <= 3"
    # got only "the left side ... is not an arithmetic expression")
    if len(parts) != 3 or _JOINED.search(text) or _STRICT.search(text):
        raise DSLError(
            f"Expected the constraint {text!r} to hold exactly one of <=, >=, =="
            + _comparison_hint(text, len(parts) > 3)
        )
    consts = _constants(constants)
    lhs = _parse(parts[0], consts, f"left side of constraint {text!r}")
    rhs = _parse(parts[2], consts, f"right side of constraint {text!r}")
    sense = parts[1]
    diff = lhs - rhs if sense != "<=" else rhs - lhs
    num, den = sympy.fraction(sympy.cancel(sympy.together(diff)))
    den_poly = sympy.Poly(sympy.expand(den), TP, FP, FN, TN)
    coeffs = [sympy.sympify(c) for c in den_poly.coeffs()]
    if all(c.is_nonnegative for c in coeffs):
        pass
    elif all(c.is_nonpositive for c in coeffs):
        num, den = -num, -den
    else:
        raise DSLError(
            f"cannot turn the constraint {text!r} into a linear row: its denominator {den} "
            "may change sign, so multiplying through is not valid; use ratios whose "
            "denominators are sums of counts (like precision and recall)"
        )
    row = Affine.of(_unit_coefficients(num.subs(_REDUCE)), text, "row")
    if not row.has_counts():  # "0 <= 1", "TP == TP": no row of the LP, only a bool
        raise DSLError(
            f"the constraint {text!r} does not depend on the prediction (with FN = n_pos - TP "
            f"and TN = n_neg - FP it reduces to {row.c0} {'==' if sense == '==' else '>='} 0); "
            "constrain TP, FP, FN or TN"
        )
    return LinearRow(text, row, sense, _unit_coefficients(den))


def _comparison_hint(text: str, several: bool) -> str:
    """What to write instead, for a constraint without exactly one of ``<=, >=, ==``."""
    if several or _JOINED.search(text):
        return (
            "; write each comparison as its own string, e.g. constraints=['recall >= 0.5', "
            "'recall <= 0.9']"
        )
    for wrong, right in (
        ("=>", ">="),
        ("=<", "<="),
        ("≥", ">="),
        ("≤", "<="),
        ("≠", None),
        ("!=", None),
    ):
        if wrong in text:
            return (
                f" (write {right} for {wrong})" if right else f" ({wrong} is not an LP constraint)"
            )
    if re.search(r"(?<![<>=!])=(?!=)", text):
        return " (write == for an equality)"
    if _STRICT.search(text):
        return " (strict < and > are not LP constraints; use <= or >=)"
    return ""


def _unit_coefficients(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` divided by its largest coefficient (as a polynomial in every symbol).

    Cross-multiplying goes through sympy's rationals: ``"recall >= alpha"`` with ``alpha =
    0.27692...`` came out as ``5e16 TP - 1.38e16 n_pos >= 0``. The LP is indifferent (the
    solver normalises rows), but the row's scale is arbitrary: HiGHS called the LP infeasible,
    and it weighted the phase-1 pull of
    :meth:`lpdsl.metrics.ratio.RatioMetricLoss._degenerate_estimate` by 5e16.
    """
    return sympy.expand(expr / _largest_coefficient(expr))


def _largest_coefficient(expr: sympy.Expr) -> sympy.Rational:
    """The largest magnitude of ``expr``'s coefficients as a polynomial in every symbol, exact
    (a rational: no float overflow for 10^400), 1 for ``expr = 0``."""
    expr = sympy.expand(expr)
    symbols = sorted(expr.free_symbols, key=str)
    coeffs = sympy.Poly(expr, *symbols).coeffs() if symbols else [expr]
    top = max(abs(sympy.Rational(c)) for c in coeffs)
    return top if top != 0 else sympy.S.One
