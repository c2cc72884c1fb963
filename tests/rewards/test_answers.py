"""Final-answer extraction from responses: GSM8K answers, numbers as written."""

import pytest

from rlhf.rewards.answers import gsm8k_final_answer, normalize_number


@pytest.mark.parametrize(
    "text,expected",
    [
        ("18", 18.0),
        ("1,234", 1234.0),
        ("1,450,000", 1450000.0),
        ("$1,234.50", 1234.5),
        (r"\$18", 18.0),
        ("12.50", 12.5),
        ("18.", 18.0),
        ("18 dollars", 18.0),
        ("5 cm", 5.0),
        ("50%", 50.0),
        ("-10", -10.0),
        ("−3", -3.0),
        ("-$5", -5.0),
        ("$-5", -5.0),
        (".5", 0.5),
        ("3/4", 0.75),
        ("3/4.", 0.75),
        (r"\frac{3}{4}", 0.75),
        (r"\dfrac{-3}{4}", -0.75),
        ("x - 3", 3.0),  # a subtraction, not a negative number
        ("12,34", 12.0),  # not a thousands separator
        ("about 7 or 8", 7.0),  # the first number
        ("no number", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    "response,expected",
    [
        ("3 + 4 = 7\n#### 7", "7"),
        ("#### 18\nthat is all, 5", "18"),
        ("#### 1\nthen #### 2", "2"),
        (r"#### 18 but \boxed{19} and the answer is 20", "18 but \\boxed{19} and the answer is 20"),
        (r"\boxed{19}. The answer is 20", "19"),
        ("The answer is $18.\nCheck: 9 * 2 = 18, 3", "$18."),
        ("So THE ANSWER IS: 42 apples", "42 apples"),
        ("The final answer is 12", "12"),
        ("I add 3 and 4 to get 7 dollars.", "7"),
        ("It costs $1,234.50 in total", "$1,234.50"),
        ("no numbers at all", None),
        (r"#### " + "\n" + r"\boxed{7}", r"\boxed{7}"),
    ],
)
def test_gsm8k_final_answer_precedence(response, expected):
    assert gsm8k_final_answer(response) == expected
