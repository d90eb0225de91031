"""Tokens of the expression language: numbers, names, quoted text, operators and parentheses.

A hand-written scanner (no ``eval``, no Python tokenizer): anything it does not know — a dot
after a name (attribute access), brackets, semicolons, backslashes — is refused with the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import ExpressionError

MAX_EXPRESSION_CHARS = 1000
"""Longer expressions are refused before they are scanned."""

# Typographic forms people paste from papers and docs, read as their ASCII operators.
_ALIASES = {"−": "-", "×": "*", "÷": "/", "≤": "<=", "≥": ">=", "≠": "!="}
_OPERATORS = ("**", "<=", ">=", "==", "!=", "<", ">", "=", "+", "-", "*", "/", "(", ")", ",")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS = ("and", "or", "not")


@dataclass(frozen=True)
class Token:
    """One token: ``kind`` is NUM, NAME, TEXT, OP, KEYWORD or END; ``pos`` is its 0-based offset."""

    kind: str
    text: str
    pos: int


def where(text: str, pos: int) -> str:
    """The expression with a caret under ``pos``, for error messages."""
    return f"\n    {text}\n    {' ' * pos}^"


def _fail(text: str, pos: int, message: str) -> ExpressionError:
    return ExpressionError(f"{message} (at character {pos + 1}){where(text, pos)}")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens; raises ``ExpressionError`` naming the first thing refused."""
    if not isinstance(text, str):
        raise ExpressionError(f"an expression must be text, got {type(text).__name__}")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; the limit is {MAX_EXPRESSION_CHARS}")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in _ALIASES:
            tokens.append(Token("OP", _ALIASES[ch], i))
            i += 1
            continue
        number = _NUMBER.match(text, i)
        if number:
            end = number.end()
            if end < len(text) and (text[end].isalpha() or text[end] == "_"):
                raise _fail(text, i, f"a number runs into a name: {text[i:end + 1]!r}")
            tokens.append(Token("NUM", number.group(), i))
            i = end
            continue
        name = _NAME.match(text, i)
        if name:
            word = name.group()
            if word.startswith("__"):
                raise _fail(text, i, f"names starting with '__' are not allowed ({word!r})")
            kind = "KEYWORD" if word.lower() in KEYWORDS else "NAME"
            tokens.append(Token(kind, word.lower() if kind == "KEYWORD" else word, i))
            i = name.end()
            continue
        if ch == "`":  # a column name with spaces or punctuation: `g-band mag`
            end = text.find("`", i + 1)
            if end < 0:
                raise _fail(text, i, "a `quoted column name` is not closed")
            if end == i + 1:
                raise _fail(text, i, "an empty `` column name")
            tokens.append(Token("NAME", text[i + 1:end], i))
            i = end + 1
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise _fail(text, i, "a quoted text value is not closed")
            tokens.append(Token("TEXT", text[i + 1:end], i))
            i = end + 1
            continue
        if ch == ".":
            raise _fail(text, i, "attribute access ('.') is not allowed: use column names, "
                                 "numbers and the operators + - * / **")
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("OP", op, i))
                i += len(op)
                break
        else:
            raise _fail(text, i, f"the character {ch!r} is not part of the expression language "
                                 "(column names, numbers, 'text', + - * / **, comparisons, "
                                 "and/or/not, log10() abs() sqrt())")
    tokens.append(Token("END", "", len(text)))
    return tokens
