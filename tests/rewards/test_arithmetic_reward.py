"""Exact-match reward of the addition task."""

import pytest

from rlhf.rewards.arithmetic import arithmetic_score


@pytest.mark.parametrize(
    "response,ground_truth,expected",
    [
        ("52", "52", 1.0),
        (" 52\n", "52", 1.0),
        ("52", " 52 ", 1.0),
        ("0", "0", 1.0),
        ("53", "52", 0.0),
        ("052", "52", 0.0),
        ("52.0", "52", 0.0),
        ("5 2", "52", 0.0),
        ("52 apples", "52", 0.0),
        ("", "52", 0.0),
    ],
)
def test_arithmetic_score(response, ground_truth, expected):
    score = arithmetic_score(response, ground_truth)
    assert isinstance(score, float)
    assert score == expected
