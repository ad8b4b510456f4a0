"""Expressions in mapping files, evaluated without ``eval``.

A mapping file may compute a field from others, e.g. ``totalAmount - taxAmount`` for a net amount
an invoice does not print. The text is parsed with :mod:`ast` and only these forms are accepted:

* decimal numbers (``19``, ``0.19``) and quoted text (``"n/a"``),
* field names of the same level, dotted for nested fields (``supplier.vatId``),
* ``+ - * /``, unary minus and parentheses,
* the functions of :data:`FUNCTIONS`.

Anything else (attribute access on values, subscripts, comparisons, lambdas, keyword arguments,
...) is refused when the file is loaded, so a mapping can never run code. Arithmetic is decimal.
An absent value makes the whole result absent (the field then stays empty, or takes its
default), except inside ``coalesce``, which exists to choose among possibly absent values.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, DivisionByZero, InvalidOperation
from typing import Protocol

__all__ = [
    "FUNCTIONS",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "Scope",
    "compile_expression",
]

#: The functions an expression may call, with what they do.
FUNCTIONS: dict[str, str] = {
    "coalesce": "the first of its arguments that is present",
    "round": "round(x, n): x rounded to n decimal places, half to even",
    "abs": "the absolute value",
    "min": "the smallest of its arguments",
    "max": "the largest of its arguments",
    "sum": "sum(lines.amount): the sum of a field over every row of a list",
}
_MAX_LENGTH = 500


class ExpressionError(ValueError):
    """The text is not an expression this module accepts (raised when a mapping is loaded)."""


class EvaluationError(ValueError):
    """The expression cannot be computed for these values (division by zero, text minus number)."""


class Scope(Protocol):
    """The values an expression reads."""

    def value(self, name: str) -> object | None:
        """A field's value, None when absent."""
        ...

    def column(self, name: str) -> Sequence[object | None] | None:
        """The values of one field over the rows of a list (``lines.amount``), None if no list."""
        ...


_Evaluate = Callable[[Scope], object | None]


@dataclass(frozen=True)
class Expression:
    """A checked expression: what it reads, and how to compute it."""

    text: str
    #: the field names it reads
    names: frozenset[str]
    #: the list fields it sums over (``lines.amount``)
    columns: frozenset[str]
    _evaluate: _Evaluate

    def evaluate(self, scope: Scope) -> object | None:
        """The value for ``scope``; None when a value it needs is absent.

        Raises :class:`EvaluationError` when the values cannot be combined.
        """
        return self._evaluate(scope)


def _number(value: object, text: str) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    msg = f"{text}: {value!r} is not a number"
    raise EvaluationError(msg)


def _arithmetic(op: ast.operator, left: object, right: object, text: str) -> object:
    if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        return left + right
    a, b = _number(left, text), _number(right, text)
    try:
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            return a * b
        return a / b
    except (DivisionByZero, InvalidOperation):
        msg = f"{text}: division by zero"
        raise EvaluationError(msg) from None


class _Compiler:
    """Turns an :mod:`ast` tree into nested closures, refusing every form not listed above."""

    def __init__(self, text: str, names: frozenset[str], columns: frozenset[str]) -> None:
        self.text = text
        self.known_names = names
        self.known_columns = columns
        self.names: set[str] = set()
        self.columns: set[str] = set()

    def fail(self, what: str) -> ExpressionError:
        return ExpressionError(f"{what} in {self.text!r}")

    def compile(self, node: ast.expr) -> _Evaluate:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name | ast.Attribute):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            operand = self.compile(node.operand)
            negate = isinstance(node.op, ast.USub)
            text = self.text

            def signed(scope: Scope) -> object | None:
                value = operand(scope)
                if value is None:
                    return None
                number = _number(value, text)
                return -number if negate else number

            return signed
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(f"{type(node).__name__} is not allowed")

    def constant(self, node: ast.Constant) -> _Evaluate:
        value = node.value
        if isinstance(value, str):
            return lambda _scope: value
        if isinstance(value, int | float) and not isinstance(value, bool):
            literal = ast.get_source_segment(self.text, node) or repr(value)
            try:
                number = Decimal(literal)
            except InvalidOperation:
                raise self.fail(f"{literal} is not a decimal number") from None
            return lambda _scope: number
        raise self.fail(f"the constant {value!r} is not allowed")

    def dotted(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{self.dotted(node.value)}.{node.attr}"
        raise self.fail(f"{type(node).__name__} is not a field name")

    def unknown(self, name: str) -> ExpressionError:
        from difflib import get_close_matches  # noqa: PLC0415 - only on a mistake

        known = sorted(self.known_names | self.known_columns)
        close = get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return self.fail(f"unknown field {name}{hint}")

    def name(self, node: ast.Name | ast.Attribute) -> _Evaluate:
        name = self.dotted(node)
        if name in self.known_columns:
            raise self.fail(f"{name} is a list field: use it in sum({name})")
        if name not in self.known_names:
            raise self.unknown(name)
        self.names.add(name)
        return lambda scope: scope.value(name)

    def binary(self, node: ast.BinOp) -> _Evaluate:
        if not isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
            raise self.fail(f"the operator {type(node.op).__name__} is not allowed")
        left, right, op, text = (
            self.compile(node.left),
            self.compile(node.right),
            node.op,
            self.text,
        )

        def combine(scope: Scope) -> object | None:
            a, b = left(scope), right(scope)
            if a is None or b is None:
                return None
            return _arithmetic(op, a, b, text)

        return combine

    def call(self, node: ast.Call) -> _Evaluate:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.fail(f"only these functions may be called: {allowed}")
        if node.keywords:
            raise self.fail("keyword arguments are not allowed")
        function = node.func.id
        if function == "sum":
            return self.column_sum(node)
        if not node.args:
            raise self.fail(f"{function}() needs an argument")
        if function == "round":
            return self.round(node)
        if function == "abs" and len(node.args) != 1:
            raise self.fail("abs() takes one argument")
        args = [self.compile(arg) for arg in node.args]
        if function == "coalesce":
            return lambda scope: next(
                (value for value in (arg(scope) for arg in args) if value is not None), None
            )
        return self.numeric(function, args)

    def numeric(self, function: str, args: list[_Evaluate]) -> _Evaluate:
        text = self.text

        def apply(scope: Scope) -> object | None:
            values = [arg(scope) for arg in args]
            if any(value is None for value in values):
                return None
            numbers = [_number(value, text) for value in values]
            if function == "abs":
                return abs(numbers[0])
            return min(numbers) if function == "min" else max(numbers)

        return apply

    def round(self, node: ast.Call) -> _Evaluate:
        places: object = 0
        if len(node.args) == 2:
            second = node.args[1]
            places = second.value if isinstance(second, ast.Constant) else None
        if (
            len(node.args) not in (1, 2)
            or not isinstance(places, int)
            or isinstance(places, bool)
            or not 0 <= places <= 10
        ):
            raise self.fail("round() takes a value and a number of places from 0 to 10")
        operand, text = self.compile(node.args[0]), self.text
        exponent = Decimal(1).scaleb(-places)

        def rounded(scope: Scope) -> object | None:
            value = operand(scope)
            if value is None:
                return None
            try:
                return _number(value, text).quantize(exponent, rounding=ROUND_HALF_EVEN)
            except InvalidOperation:
                msg = f"{text}: {value} is too large to round to {places} places"
                raise EvaluationError(msg) from None

        return rounded

    def column_sum(self, node: ast.Call) -> _Evaluate:
        if len(node.args) != 1 or not isinstance(node.args[0], ast.Attribute):
            raise self.fail("sum() takes one list field, e.g. sum(lines.amount)")
        column = self.dotted(node.args[0])
        if column not in self.known_columns:
            if column in self.known_names:
                raise self.fail(f"{column} is not a field of a list")
            raise self.unknown(column)
        self.columns.add(column)
        text = self.text

        def total(scope: Scope) -> object | None:
            values = scope.column(column)
            if not values or any(value is None for value in values):
                return None
            return sum((_number(value, text) for value in values), Decimal(0))

        return total


def compile_expression(
    text: str, names: frozenset[str], columns: frozenset[str] = frozenset()
) -> Expression:
    """Check ``text`` against the fields it may read (``names``) and list fields (``columns``).

    Raises :class:`ExpressionError` naming what is not allowed.
    """
    if not text.strip():
        msg = "an empty expression"
        raise ExpressionError(msg)
    if len(text) > _MAX_LENGTH:
        msg = f"an expression longer than {_MAX_LENGTH} characters"
        raise ExpressionError(msg)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        msg = f"{text!r} is not an expression: {error.msg}"
        raise ExpressionError(msg) from None
    compiler = _Compiler(text.strip(), names, columns)
    evaluate = compiler.compile(tree.body)
    return Expression(
        text=text.strip(),
        names=frozenset(compiler.names),
        columns=frozenset(compiler.columns),
        _evaluate=evaluate,
    )
