"""Evaluate a parsed expression over columns (numpy arrays), by walking its tree.

Numbers are float64. A formula whose result is not finite where its inputs were (division by
zero, log10 of a value <= 0, square root of a negative, overflow) raises ``ExpressionError``
naming the first item, unless the caller declares a ``fill`` value. In a criterion a comparison
with a missing value (NaN) is false.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import numpy as np

from core.errors import ExpressionError
from core.expr.parser import (
    Binary,
    Call,
    Column,
    Compare,
    Expression,
    Logic,
    Not,
    Num,
    Text,
    Unary,
)

_COMPARE = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal,
            "==": np.equal, "!=": np.not_equal}
_PROBLEM = {"/": "division by zero", "log10": "log10 of a value <= 0",
            "sqrt": "square root of a negative value", "**": "a power out of range",
            "*": "an overflow", "+": "an overflow", "-": "an overflow"}


def check_columns(expression: Expression, available: Sequence[str], *, what: str = "column") -> None:
    """Raise ``ExpressionError`` for the first column the expression names that is not available."""
    known = set(available)
    for name in expression.columns:
        if name not in known:
            close = difflib.get_close_matches(name, list(available), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            shown = ", ".join(list(available)[:40]) + (" ..." if len(available) > 40 else "")
            raise ExpressionError(f"unknown {what} {name!r} in {expression.text!r}{hint} "
                                  f"(available: {shown or 'none'})")


def is_numeric(values: np.ndarray) -> bool:
    return np.asarray(values).dtype.kind in "biuf"


class _Walker:
    def __init__(self, expression: Expression, columns: Mapping[str, np.ndarray], n: int,
                 ids: Sequence[str] | None) -> None:
        self.expression = expression
        self.columns = columns
        self.n = n
        self.ids = ids
        self.problem: tuple[str, int] | None = None  # (what, first row)

    def item(self, row: int) -> str:
        if self.ids is not None:
            return f"item {str(self.ids[row])!r} (row {row + 1})"
        return f"row {row + 1}"

    def note(self, what: str, bad: np.ndarray) -> None:
        if self.problem is None and np.any(bad):
            self.problem = (what, int(np.flatnonzero(np.broadcast_to(bad, (self.n,)))[0]))

    # ------------------------------------------------------------------ values
    def number(self, node) -> np.ndarray:
        if isinstance(node, Num):
            return np.float64(node.value)
        if isinstance(node, Column):
            values = np.asarray(self.columns[node.name])
            if not is_numeric(values):
                raise ExpressionError(f"column {node.name!r} holds text; arithmetic and <, > "
                                      f"need numbers (in {self.expression.text!r})")
            return values.astype(np.float64, copy=False)
        if isinstance(node, Unary):
            value = self.number(node.operand)
            return -value if node.op == "-" else value
        if isinstance(node, Call):
            x = self.number(node.argument)
            finite = np.isfinite(x)
            if node.function == "abs":
                return np.abs(x)
            if node.function == "log10":
                self.note(_PROBLEM["log10"], finite & (x <= 0))
                return np.log10(x)
            self.note(_PROBLEM["sqrt"], finite & (x < 0))
            return np.sqrt(x)
        if isinstance(node, Binary):
            a, b = self.number(node.left), self.number(node.right)
            finite = np.isfinite(a) & np.isfinite(b)
            if node.op == "+":
                out = a + b
            elif node.op == "-":
                out = a - b
            elif node.op == "*":
                out = a * b
            elif node.op == "/":
                self.note(_PROBLEM["/"], finite & (b == 0))
                out = a / b
            else:
                out = np.power(a, b)
            self.note(_PROBLEM[node.op], finite & ~np.isfinite(out))
            return out
        raise ExpressionError(f"{self.expression.text!r}: a number was expected here")

    def operand(self, node):
        """A comparison operand: text (object array or str) or number (float64)."""
        if isinstance(node, Text):
            return node.value
        if isinstance(node, Column) and not is_numeric(np.asarray(self.columns[node.name])):
            return np.asarray(self.columns[node.name], dtype=object)
        return self.number(node)

    def truth(self, node) -> np.ndarray:
        if isinstance(node, Logic):
            parts = [self.truth(child) for child in node.operands]
            combine = np.logical_and if node.op == "and" else np.logical_or
            out = parts[0]
            for part in parts[1:]:
                out = combine(out, part)
            return out
        if isinstance(node, Not):
            return np.logical_not(self.truth(node.operand))
        if isinstance(node, Compare):
            values = [self.operand(child) for child in node.operands]
            out = np.ones(self.n, dtype=bool)
            for op, a, b in zip(node.ops, values, values[1:]):
                out &= self.compare(op, a, b)
            return out
        raise ExpressionError(f"{self.expression.text!r}: a comparison was expected here")

    def compare(self, op: str, a, b) -> np.ndarray:
        a_text = isinstance(a, str) or (isinstance(a, np.ndarray) and a.dtype == object)
        b_text = isinstance(b, str) or (isinstance(b, np.ndarray) and b.dtype == object)
        if a_text != b_text:
            raise ExpressionError(f"{self.expression.text!r} compares text with a number; quote "
                                  "the value for a text column ('QSO') and not for a numeric one")
        if a_text:
            if op not in ("==", "!="):
                raise ExpressionError(f"{self.expression.text!r}: text can only be compared "
                                      "with == or !=")
            a_str = np.asarray(a, dtype=object).astype(str) if not isinstance(a, str) else a
            b_str = np.asarray(b, dtype=object).astype(str) if not isinstance(b, str) else b
            same = np.equal(a_str, b_str)
            return np.broadcast_to(same if op == "==" else ~same, (self.n,)).copy()
        with np.errstate(invalid="ignore"):
            result = _COMPARE[op](a, b) & ~np.isnan(a) & ~np.isnan(b)
        return np.broadcast_to(result, (self.n,)).copy()


def _lookup(expression: Expression, columns: Mapping[str, np.ndarray]) -> int:
    check_columns(expression, list(columns))
    lengths = {len(np.asarray(columns[c])) for c in expression.columns}
    if len(lengths) > 1:
        raise ExpressionError(f"{expression.text!r}: columns of different lengths {sorted(lengths)}")
    if lengths:
        return lengths.pop()
    any_column = next(iter(columns.values()), None)
    return 0 if any_column is None else len(any_column)


def evaluate_number(expression: Expression, columns: Mapping[str, np.ndarray], *,
                    fill: float | None = None, ids: Sequence[str] | None = None,
                    name: str | None = None) -> np.ndarray:
    """The formula's value for every row (float64). ``fill`` replaces results that are not
    finite where the inputs were; without it such a result raises ``ExpressionError``."""
    n = _lookup(expression, columns)
    walker = _Walker(expression, columns, n, ids)
    with np.errstate(all="ignore"):
        out = np.broadcast_to(np.asarray(walker.number(expression.root), dtype=np.float64), (n,)).copy()
    if walker.problem is not None:
        what, row = walker.problem
        label = f"{name} = {expression.text}" if name else expression.text
        if fill is None:
            raise ExpressionError(
                f"{label!r}: {what} at {walker.item(row)}; fix the data or declare a fill "
                "value for such items (fill: 0.0)")
        inputs_ok = np.ones(n, dtype=bool)
        for column in expression.columns:
            inputs_ok &= np.isfinite(np.asarray(columns[column], dtype=np.float64))
        out[inputs_ok & ~np.isfinite(out)] = float(fill)
    return out


def evaluate_criteria(expression: Expression, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n,) bool: which rows meet the criterion."""
    n = _lookup(expression, columns)
    walker = _Walker(expression, columns, n, None)
    with np.errstate(all="ignore"):
        return walker.truth(expression.root)
