"""The expression language of criteria and derived columns: what it computes, what it refuses."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from core.errors import ConfigError, ExpressionError
from core.expr import evaluate_criteria, evaluate_number, parse, parse_arithmetic, parse_criteria

COLUMNS = {
    "u": np.array([20.0, 19.0, 18.5, np.nan]),
    "g": np.array([19.0, 18.0, 18.6, 17.0]),
    "r": np.array([18.5, 18.0, 18.0, 16.5]),
    "kind": np.array(["star", "qso", "star", "galaxy"], dtype=object),
}


def number(text, **kw):
    return evaluate_number(parse_arithmetic(text), COLUMNS, **kw)


def rows(text):
    return np.flatnonzero(evaluate_criteria(parse_criteria(text), COLUMNS)).tolist()


def test_arithmetic_follows_usual_precedence():
    np.testing.assert_allclose(number("g - r"), [0.5, 0.0, 0.6, 0.5])
    np.testing.assert_allclose(number("u - g - r")[:3], [-17.5, -17.0, -18.1])
    np.testing.assert_allclose(number("2 + 3 * g")[:2], [59.0, 56.0])
    np.testing.assert_allclose(number("-(g - r) ** 2"), [-0.25, -0.0, -0.36, -0.25])
    np.testing.assert_allclose(number("log10(10 ** 2) + abs(-1) + sqrt(4)"), [5.0] * 4)
    np.testing.assert_allclose(number("g − r"), number("g - r"))  # typographic minus
    assert np.isnan(number("u - g")[3])  # missing stays missing


def test_criteria_with_and_or_not_chains_and_text():
    assert rows("g - r > 0.4") == [0, 2, 3]
    assert rows("g - r > 0.4 AND r < 18.2") == [2, 3]
    assert rows("g - r > 0.4 AND r < 18.2 and r > 17") == [2]
    assert rows("kind == 'qso' or kind = 'galaxy'") == [1, 3]
    assert rows("not kind != 'star'") == [0, 2]
    assert rows("18 <= r < 18.5") == [1, 2]
    assert rows("u > 0") == [0, 1, 2]  # a comparison with a missing value is false
    assert rows("(g > 18.5 or r < 17) and not kind == 'star'") == [3]


def test_division_by_zero_names_the_item_or_uses_the_declared_fill():
    with pytest.raises(ExpressionError, match=r"division by zero at item 'b' \(row 2\)"):
        evaluate_number(parse_arithmetic("u / (g - r)"), COLUMNS, ids=["a", "b", "c", "d"])
    filled = number("u / (g - r)", fill=-99.0)
    assert filled[1] == -99.0 and np.isnan(filled[3])  # missing input stays missing
    with pytest.raises(ExpressionError, match="log10 of a value <= 0"):
        number("log10(g - r)")


HOSTILE = [
    ("__import__('os').system('x')", "names starting with '__'"),
    ("g.__class__", "attribute access"),
    ("g.real", "attribute access"),
    ("open('/etc/passwd')", "unknown function 'open'"),
    ("eval('1')", "unknown function 'eval'"),
    ("g ** 1000", "exponent 1000 is too large"),
    ("2 ** 9 ** 9", "chained exponents"),
    ("g ** r", "exponent after '\\*\\*' must be a number"),
    ("1e999", "too large"),
    ("g[0]", "not part of the expression language"),
    ("lambda: 1", "not part of the expression language"),
    ("g; r", "not part of the expression language"),
    ("(" * 60 + "g" + ")" * 60, "nests deeper"),
    ("g + " * 400 + "g", "characters long|too large"),
    ("log10(g, r)", "takes one argument"),
    ("", "empty"),
]


@pytest.mark.parametrize("text, message", HOSTILE)
def test_hostile_expressions_are_refused_and_nothing_runs(text, message, monkeypatch):
    def forbidden(*args, **kwargs):  # pragma: no cover - must never be called
        raise AssertionError("eval/exec/__import__ must never run")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ExpressionError, match=message) as info:
        expression = parse(text)
        evaluate_number(expression, COLUMNS) if expression.kind == "number" else evaluate_criteria(
            expression, COLUMNS)
    assert isinstance(info.value, ConfigError)  # the CLI turns it into exit status 2


def test_unknown_columns_are_refused_with_suggestions():
    with pytest.raises(ExpressionError, match=r"unknown column 'gr'.*did you mean 'r', 'g'"):
        number("gr * 2")
    with pytest.raises(ExpressionError, match="unknown column 'z'"):
        rows("z > 1")


def test_kinds_are_checked_before_anything_runs():
    with pytest.raises(ExpressionError, match="a criterion is needed"):
        parse_criteria("g - r")
    with pytest.raises(ExpressionError, match="a formula is needed"):
        parse_arithmetic("g > r")
    with pytest.raises(ExpressionError, match="join comparisons"):
        parse("g > 1 and r")
    with pytest.raises(ExpressionError, match="quoted text can only be compared with == or !="):
        parse("kind > 'a'")
    with pytest.raises(ExpressionError, match="holds text"):
        number("kind + 1")
    with pytest.raises(ExpressionError, match="compares text with a number"):
        rows("kind == 3")


def test_backquoted_names_allow_any_column_name():
    columns = {"g-band mag": np.array([1.0, 2.0])}
    assert evaluate_criteria(parse_criteria("`g-band mag` > 1.5"), columns).tolist() == [False, True]
    assert parse("`g-band mag` * 2").columns == ("g-band mag",)
