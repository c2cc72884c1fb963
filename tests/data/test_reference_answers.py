"""Reading a reference solution's answer: the last boxed answer, the GSM8K answer after '####'."""

import pytest

from rlhf.data.answers import after_hashes, gsm8k_ground_truth, last_boxed


@pytest.mark.parametrize(
    "text,expected",
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{2}}{2}} and more", r"\frac{\sqrt{2}}{2}"),
        (r"first \boxed{1}, then \boxed{2}", "2"),
        (r"\fbox{7}", "7"),
        (r"\boxed{1} then \fbox{3}", "3"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\left\{ 1 \right\}}", r"\left\{ 1 \right\}"),
        (r"\boxed{ 5 }", "5"),
        (r"\boxed 5$", "5"),
        (r"\boxed{3} and a cut-off \boxed{4", "3"),
        (r"\boxed{}", ""),
        ("no box here", None),
        (r"\boxed{unclosed", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "ground_truth,expected",
    [
        ("18", "18"),
        (" 1,600 \n", "1,600"),
        ("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18", "18"),
        ("It drops by 10.\n#### -10", "-10"),
    ],
)
def test_gsm8k_ground_truth(ground_truth, expected):
    assert gsm8k_ground_truth(ground_truth) == expected


@pytest.mark.parametrize(("text", "expected"), [("so #### 1,600", "1,600"), ("#### 1\nthen #### 2 ", "2"), ("no hashes", None), ("####", "")])
def test_after_hashes(text, expected):
    assert after_hashes(text) == expected


def test_the_data_package_imports_nothing_from_rewards():
    """Data sits below rewards: reading a ground truth needs no reward code."""
    import subprocess
    import sys

    code = ("import sys, rlhf.data.fields, rlhf.data.prompts, rlhf.data.prepare, rlhf.data.answers; "
            "print(sorted(m for m in sys.modules if m.startswith('rlhf.') and not m.startswith(('rlhf.data', 'rlhf.config'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
