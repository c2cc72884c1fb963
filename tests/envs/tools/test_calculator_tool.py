"""The calculator tool: exact results, deterministic formatting, and refusals that come back as
short error strings (never exceptions, never a hang)."""

from __future__ import annotations

import time

import pytest

from rlhf.envs.tools.calculator import MAX_EXPRESSION_CHARS, calculate


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("123*4567", "561741"),
        ("123*4567=", "561741"),  # the prompt's trailing '=' is tolerated
        (" (2 + 3) * -4 ", "-20"),
        ("6/3", "2"),  # exact division stays an integer
        ("1/3", "0.333333333333"),
        ("7//2", "3"),
        ("-7 % 3", "2"),
        ("2**10", "1024"),
        ("2**-2", "0.25"),
        ("sqrt(16)", "4"),
        ("sqrt(2)", "1.41421356237"),
        ("abs(-3) + max(1, 2, 3) + min(4, 5)", "10"),
        ("round(2.567, 2)", "2.57"),
        ("98765432109876543210 * 98765432109876543210", str(98765432109876543210**2)),
    ],
)
def test_results(expression, expected):
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression, reason",
    [
        ("9**9**9", "exponent too large"),
        ("2**100000", "exponent too large"),
        ("10**99 * 10**99", "result too large"),
        ("(10**60)**2", "result too large"),
        ("1e308 * 10", "not finite"),
        ("1/0", "division by zero"),
        ("5 % 0", "division by zero"),
        ("(-8)**0.5", "not a real number"),
        ("sqrt(-1)", "negative"),
        ("__import__('os').system('echo hi')", "unknown function"),
        ("().__class__", "not allowed"),
        ("x + 1", "not allowed in an expression: Name"),
        ("'a' * 3", "not allowed in an expression: Constant"),
        ("True + 1", "not allowed"),
        ("1 < 2", "not allowed"),
        ("[1, 2]", "not allowed"),
        ("lambda: 1", "not allowed"),
        ("sqrt(1, 2)", "takes 1 to 1 arguments"),
        ("12*", "invalid expression"),
        ("", "empty expression"),
        ("1+" * 60 + "1", "too complex"),
        ("1" * (MAX_EXPRESSION_CHARS + 1), "too long"),
    ],
)
def test_refusals_are_error_strings(expression, reason):
    result = calculate(expression)
    assert result.startswith("error: ") and reason in result, result


def test_hostile_expressions_return_at_once():
    started = time.perf_counter()
    for expression in ["9**9**9", "2**2**2**2**2**2", "(10**99)**(10**99)", "-" * 150 + "1", "(" * 99 + "1" + ")" * 99]:
        assert calculate(expression).startswith("error: ") or calculate(expression) == "1"
    assert time.perf_counter() - started < 1.0
