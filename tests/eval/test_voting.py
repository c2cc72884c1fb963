"""Ballots of majority voting: canonical answer keys and answer classes."""

import pytest

from rlhf.eval.voting import Ballots, answer_key, ballots


@pytest.mark.parametrize("response, key", [
    ("52", "52"),
    ("The answer is $1,234.", "1234"),
    ("so 1234 dollars\n#### 1,234 dollars", "1234"),
    ("#### 0.75", "0.75"),
    ("\\boxed{\\frac{3}{4}}", "0.75"),
    ("it is 3/4", "0.75"),
    ("\\boxed{-0}", "0"),
    ("\\boxed{18.0}", "18"),
    ("\\boxed{x = 2}", "x=2"),
    ("\\boxed{2x+1}", "2x+1"),
    ("\\boxed{\\left( 0, 1 \\right]}", "(0,1]"),
    ("no number here", None),
    ("", None),
])
def test_answer_key(response, key):
    assert answer_key(response) == key


def test_equal_answers_written_differently_vote_together():
    assert answer_key("#### $18") == answer_key("The answer is 18.") == answer_key("\\boxed{18}")
    assert answer_key("\\boxed{\\dfrac{1}{2}}") == answer_key("#### 0.5")


def test_ballots_group_by_answer_with_the_first_verdict():
    grouped = ballots(["7", None, "5", "7", None, "7"], [True, False, False, False, False, True])
    assert grouped == Ballots(class_sizes=(3, 1), class_correct=(True, False), abstentions=2)
    assert ballots([None, None], [False, False]) == Ballots((), (), 2)
