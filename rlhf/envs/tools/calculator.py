"""The `calculator` tool: arithmetic on numbers, evaluated without `eval`.

The expression is parsed with :mod:`ast` and only these nodes are walked: int and float
literals, `+ - * / // % **`, unary `-` and `+`, parentheses, and calls of the functions in
`FUNCTIONS` (`sqrt`, `abs`, `round`, `min`, `max`). Names, attributes, subscripts, strings,
comparisons and everything else are refused before anything is computed.

Limits, so that no expression can hang or exhaust memory ("9**9**9" is refused in microseconds):
- at most `MAX_EXPRESSION_CHARS` characters and `MAX_NODES` syntax nodes;
- an integer power is computed only when its result has at most `MAX_RESULT_DIGITS` digits
  (estimated from the operands' sizes before computing), and its exponent is at most
  `MAX_EXPONENT` in magnitude;
- every intermediate integer has at most `MAX_RESULT_DIGITS` digits; floats must stay finite.

`calculate(text)` never raises: a refused or failing expression comes back as a short
"error: ..." string, which the environment shows the agent as the observation.

Results are formatted deterministically: integers as integers ("558450"), `/` gives an integer
when the division is exact ("6/3" -> "2"), other floats with 12 significant digits
("1/3" -> "0.333333333333"), and integral floats below 1e15 without a decimal point
("sqrt(16)" -> "4").
"""

from __future__ import annotations

import ast
import math
import operator

MAX_EXPRESSION_CHARS = 200
"""Longest expression accepted (characters)."""
MAX_NODES = 100
"""Most syntax-tree nodes in one expression."""
MAX_EXPONENT = 10_000
"""Largest exponent magnitude of `**`."""
MAX_RESULT_DIGITS = 100
"""Most decimal digits of any integer computed along the way."""

_INT_LIMIT = 10**MAX_RESULT_DIGITS


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot compute (message shown to the agent)."""


def _sqrt(value: float) -> float:
    if value < 0:
        raise CalculatorError("sqrt of a negative number")
    return math.sqrt(value)


def _round(value: float, ndigits: int = 0) -> int | float:
    if not isinstance(ndigits, int) or abs(ndigits) > 15:
        raise CalculatorError("round takes a whole number of digits between -15 and 15")
    return round(value) if ndigits == 0 else round(value, ndigits)


FUNCTIONS = {
    "sqrt": (_sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (min, 1, 8),
    "max": (max, 1, 8),
}
"""name -> (function, fewest arguments, most arguments)."""


def _divide(left: int | float, right: int | float) -> int | float:
    if isinstance(left, int) and isinstance(right, int) and right != 0 and left % right == 0:
        return left // right
    return left / right


def _power(base: int | float, exponent: int | float) -> int | float:
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large (limit {MAX_EXPONENT})")
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        # Estimate the digits of base**exponent before paying for it.
        if exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS:
            raise CalculatorError(f"result too large (limit {MAX_RESULT_DIGITS} digits)")
    result = base**exponent
    if isinstance(result, complex):
        raise CalculatorError("result is not a real number")
    return result


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: _divide,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: _power,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}


def _checked(value: int | float) -> int | float:
    """`value` if it is within the limits, else CalculatorError."""
    if isinstance(value, int) and abs(value) >= _INT_LIMIT:
        raise CalculatorError(f"result too large (limit {MAX_RESULT_DIGITS} digits)")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("result is not finite")
    return value


def _call(node: ast.Call) -> int | float:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
        raise CalculatorError(f"unknown function; available: {', '.join(FUNCTIONS)}")
    function, fewest, most = FUNCTIONS[node.func.id]
    if not fewest <= len(node.args) <= most:
        raise CalculatorError(f"{node.func.id} takes {fewest} to {most} arguments")
    return function(*(_evaluate(arg) for arg in node.args))


def _evaluate(node: ast.AST) -> int | float:
    """The value of an allowed node; CalculatorError for any other node."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        return _checked(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _checked(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.Call):
        return _checked(_call(node))
    raise CalculatorError(f"not allowed in an expression: {type(node).__name__}")


def format_number(value: int | float) -> str:
    """Deterministic text of a result (see the module docstring)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.12g}"
    return str(value)


def evaluate(expression: str) -> int | float:
    """The value of `expression`; CalculatorError when it is refused or fails.

    A trailing '=' is ignored ("12*34=" is "12*34").
    """
    text = expression.strip().removesuffix("=").strip()
    if not text:
        raise CalculatorError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression too long (limit {MAX_EXPRESSION_CHARS} characters)")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        raise CalculatorError("invalid expression") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_NODES:
        raise CalculatorError(f"expression too complex (limit {MAX_NODES} nodes)")
    try:
        return _evaluate(tree.body)
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except (OverflowError, TypeError, ValueError) as error:
        if isinstance(error, CalculatorError):
            raise
        raise CalculatorError(f"cannot compute: {error}") from None


def calculate(expression: str) -> str:
    """The formatted result of `expression`, or "error: <reason>"; never raises."""
    try:
        return format_number(evaluate(expression))
    except CalculatorError as error:
        return f"error: {error}"
    except RecursionError:
        return "error: expression too deeply nested"
