"""A recursive-descent parser for criteria and arithmetic over columns.

Grammar (lowest precedence first; keywords are case-insensitive)::

    criteria   := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | comparison
    comparison := sum (("<" | "<=" | ">" | ">=" | "==" | "=" | "!=") sum)*
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | power
    power      := atom ("**" exponent)?          # exponent: a written number, |e| <= 10
    atom       := NUMBER | 'text' | NAME | `quoted name` | FUNCTION "(" sum ")" | "(" or ")"

The tree holds only the node types below; ``check`` gives each node a kind (number, text, bool)
so ``a and 3`` or ``log10(x > 1)`` are refused before anything is computed. Size, nesting depth,
literal magnitudes and exponents are bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.errors import ExpressionError
from core.expr.lexer import Token, tokenize, where

FUNCTIONS = ("log10", "abs", "sqrt")
COMPARISONS = ("<", "<=", ">", ">=", "==", "=", "!=")
MAX_NODES = 300
MAX_DEPTH = 40
MAX_EXPONENT = 10.0
MAX_LITERAL = 1e300


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Text:
    value: str


@dataclass(frozen=True)
class Column:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # '-' or '+'
    operand: object


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / **
    left: object
    right: object


@dataclass(frozen=True)
class Call:
    function: str
    argument: object


@dataclass(frozen=True)
class Compare:
    ops: tuple[str, ...]
    operands: tuple[object, ...]  # len(ops) + 1: a < b <= c


@dataclass(frozen=True)
class Logic:
    op: str  # 'and' / 'or'
    operands: tuple[object, ...]


@dataclass(frozen=True)
class Not:
    operand: object


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression: ``kind`` is 'number' (arithmetic) or 'bool' (criterion)."""

    text: str
    root: object
    kind: str
    columns: tuple[str, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.nodes = 0
        self.depth = 0

    # ------------------------------------------------------------------ helpers
    @property
    def token(self) -> Token:
        return self.tokens[self.i]

    def fail(self, message: str, token: Token | None = None) -> ExpressionError:
        pos = (token or self.token).pos
        return ExpressionError(f"{message} (at character {pos + 1}){where(self.text, pos)}")

    def take(self) -> Token:
        token = self.token
        self.i += 1
        return token

    def at(self, kind: str, *texts: str) -> bool:
        token = self.token
        return token.kind == kind and (not texts or token.text in texts)

    def node(self, value):
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ExpressionError(f"the expression is too large (over {MAX_NODES} parts); "
                                  "split it into several derived columns")
        return value

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {MAX_DEPTH} levels")

    # ------------------------------------------------------------------ grammar
    def parse(self):
        root = self.or_()
        if not self.at("END"):
            token = self.token
            hint = " (did you mean a comparison or 'and'/'or'?)" if token.kind in ("NAME", "NUM") else ""
            raise self.fail(f"unexpected {token.text!r}{hint}")
        return root

    def or_(self):
        self.enter()
        operands = [self.and_()]
        while self.at("KEYWORD", "or"):
            self.take()
            operands.append(self.and_())
        self.depth -= 1
        return operands[0] if len(operands) == 1 else self.node(Logic("or", tuple(operands)))

    def and_(self):
        operands = [self.not_()]
        while self.at("KEYWORD", "and"):
            self.take()
            operands.append(self.not_())
        return operands[0] if len(operands) == 1 else self.node(Logic("and", tuple(operands)))

    def not_(self):
        if self.at("KEYWORD", "not"):
            self.take()
            self.enter()
            operand = self.not_()
            self.depth -= 1
            return self.node(Not(operand))
        return self.comparison()

    def comparison(self):
        operands = [self.sum_()]
        ops = []
        while self.at("OP", *COMPARISONS):
            op = self.take().text
            ops.append("==" if op == "=" else op)
            operands.append(self.sum_())
        if not ops:
            return operands[0]
        return self.node(Compare(tuple(ops), tuple(operands)))

    def sum_(self):
        left = self.product()
        while self.at("OP", "+", "-"):
            op = self.take().text
            left = self.node(Binary(op, left, self.product()))
        return left

    def product(self):
        left = self.unary()
        while self.at("OP", "*", "/"):
            op = self.take().text
            left = self.node(Binary(op, left, self.unary()))
        return left

    def unary(self):
        if self.at("OP", "-", "+"):
            op = self.take().text
            self.enter()
            operand = self.unary()
            self.depth -= 1
            return self.node(Unary(op, operand))
        return self.power()

    def power(self):
        base = self.atom()
        if self.at("OP", "**"):
            token = self.take()
            exponent = self.exponent(token)
            return self.node(Binary("**", base, Num(exponent)))
        return base

    def exponent(self, token: Token) -> float:
        sign = 1.0
        while self.at("OP", "-", "+"):
            sign *= -1.0 if self.take().text == "-" else 1.0
        if not self.at("NUM"):
            raise self.fail("the exponent after '**' must be a number written out "
                            f"(between -{MAX_EXPONENT:g} and {MAX_EXPONENT:g})", token)
        value = sign * self.number(self.take())
        if abs(value) > MAX_EXPONENT:
            raise self.fail(f"the exponent {value:g} is too large; exponents must lie between "
                            f"-{MAX_EXPONENT:g} and {MAX_EXPONENT:g}", token)
        if self.at("OP", "**"):
            raise self.fail("chained exponents (a ** b ** c) are not allowed", self.token)
        return value

    def number(self, token: Token) -> float:
        value = float(token.text)
        if not math.isfinite(value) or abs(value) > MAX_LITERAL:
            raise self.fail(f"the number {token.text} is too large", token)
        return value

    def atom(self):
        token = self.token
        if token.kind == "NUM":
            self.take()
            return self.node(Num(self.number(token)))
        if token.kind == "TEXT":
            self.take()
            return self.node(Text(token.text))
        if token.kind == "NAME":
            self.take()
            if self.at("OP", "("):
                return self.call(token)
            return self.node(Column(token.text))
        if self.at("OP", "("):
            self.take()
            inner = self.or_()
            if not self.at("OP", ")"):
                raise self.fail("a '(' is not closed")
            self.take()
            return inner
        if token.kind == "END":
            raise self.fail("the expression ends too early")
        raise self.fail(f"unexpected {token.text!r}")

    def call(self, name: Token):
        if name.text not in FUNCTIONS:
            raise self.fail(f"unknown function {name.text!r}; the functions are "
                            + ", ".join(f"{f}()" for f in FUNCTIONS), name)
        self.take()  # '('
        self.enter()
        argument = self.sum_()
        self.depth -= 1
        if self.at("OP", ","):
            raise self.fail(f"{name.text}() takes one argument")
        if not self.at("OP", ")"):
            raise self.fail(f"{name.text}( is not closed")
        self.take()
        return self.node(Call(name.text, argument))


# ---------------------------------------------------------------------- kinds
def _kind(node, text: str) -> str:
    """'number', 'text', 'bool' or 'column' (a column is a number or text, known with the data)."""
    if isinstance(node, Num):
        return "number"
    if isinstance(node, Text):
        return "text"
    if isinstance(node, Column):
        return "column"
    if isinstance(node, (Unary, Binary, Call)):
        for child in _children(node):
            kind = _kind(child, text)
            if kind not in ("number", "column"):
                what = {"text": "quoted text", "bool": "a comparison"}[kind]
                raise ExpressionError(f"arithmetic needs numbers, but got {what} in {text!r}")
        return "number"
    if isinstance(node, Compare):
        kinds = [_kind(child, text) for child in node.operands]
        if "bool" in kinds:
            raise ExpressionError(f"a comparison cannot compare the result of another "
                                  f"comparison; join criteria with 'and'/'or' in {text!r}")
        for op, a, b in zip(node.ops, kinds, kinds[1:]):
            if "text" in (a, b) and op not in ("==", "!="):
                raise ExpressionError(f"quoted text can only be compared with == or !=, "
                                      f"not {op!r}, in {text!r}")
            if "text" in (a, b) and "number" in (a, b):
                raise ExpressionError(f"cannot compare a number with quoted text in {text!r}")
        return "bool"
    if isinstance(node, (Logic, Not)):
        for child in _children(node):
            if _kind(child, text) != "bool":
                raise ExpressionError(f"'and', 'or' and 'not' join comparisons such as "
                                      f"'r < 19'; got a value instead in {text!r}")
        return "bool"
    raise ExpressionError(f"unsupported part in {text!r}")  # pragma: no cover - closed set


def _children(node) -> tuple:
    if isinstance(node, (Unary, Not)):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Call):
        return (node.argument,)
    if isinstance(node, (Compare, Logic)):
        return node.operands
    return ()


def columns_of(node) -> tuple[str, ...]:
    """Column names the tree reads, in first-use order."""
    seen: dict[str, None] = {}
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Column):
            seen.setdefault(current.name)
        stack.extend(reversed(_children(current)))
    return tuple(seen)


def parse(text: str) -> Expression:
    """Parse and check ``text``; the result is a criterion ('bool') or arithmetic ('number')."""
    root = _Parser(text).parse()
    kind = _kind(root, text)
    if kind == "text":
        raise ExpressionError(f"{text!r} is only quoted text; write a comparison or a formula")
    return Expression(text=text, root=root, kind="number" if kind == "column" else kind,
                      columns=columns_of(root))


def parse_arithmetic(text: str) -> Expression:
    """A formula over columns (``g - r``, ``log10(flux) * 2.5``); comparisons are refused."""
    expression = parse(text)
    if expression.kind != "number":
        raise ExpressionError(f"{text!r} is a criterion, but a formula is needed here "
                              "(e.g. 'g - r' or 'log10(flux_r)')")
    return expression


def parse_criteria(text: str) -> Expression:
    """A criterion over columns (``g_r > 0.4 and r < 19``); a bare formula is refused."""
    expression = parse(text)
    if expression.kind != "bool":
        raise ExpressionError(f"{text!r} is a formula, but a criterion is needed here: compare "
                              "it, e.g. 'g_r > 0.4 and r < 19'")
    return expression
