"""A small, safe expression language for criteria and derived columns (never ``eval``).

``parse_criteria("g_r > 0.4 and r < 19")`` and ``parse_arithmetic("log10(flux) * 2.5")`` turn user
text into a checked tree (see ``core.expr.parser`` for the grammar and limits);
``evaluate_criteria`` / ``evaluate_number`` walk that tree over numpy columns. Anything outside
the grammar — attribute access, other functions, names starting with ``__``, huge exponents,
unknown columns — is refused with an ``ExpressionError`` that says what and where.
"""

from core.expr.evaluate import check_columns, evaluate_criteria, evaluate_number, is_numeric
from core.expr.lexer import MAX_EXPRESSION_CHARS
from core.expr.parser import FUNCTIONS, Expression, parse, parse_arithmetic, parse_criteria

__all__ = [
    "FUNCTIONS",
    "MAX_EXPRESSION_CHARS",
    "Expression",
    "check_columns",
    "evaluate_criteria",
    "evaluate_number",
    "is_numeric",
    "parse",
    "parse_arithmetic",
    "parse_criteria",
]
