"""Built-in verifiers: GSM8K numeric match, MATH equivalence through math-verify, and the
`gsm8k` / `math` reward sources."""

import json
from pathlib import Path

import pytest
import torch

from rlhf.data.batch import Batch
from rlhf.data.answers import gsm8k_ground_truth
from rlhf.rewards.registry import REWARD_SOURCES, build_reward_source
from rlhf.rewards.verifiers import gsm8k_score, math_score, normalize_answer

GSM8K_TEST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gsm8k" / "test.jsonl"


@pytest.mark.parametrize(
    "response,ground_truth,expected",
    [
        ("9 * 2 = 18\n#### 18", "18", 1.0),
        ("#### 18", "She makes 9 * 2 = $<<9*2=18>>18.\n#### 18", 1.0),
        ("#### 18.00", "18", 1.0),
        ("#### $18", "18", 1.0),
        ("#### 18 dollars", "18", 1.0),
        ("#### 1,600", "1600", 1.0),
        ("#### 1600", "1,600", 1.0),
        ("#### -10", "-10", 1.0),
        ("#### 10", "-10", 0.0),
        (r"so \boxed{18}", "18", 1.0),
        ("The answer is 18.", "18", 1.0),
        ("9 * 2 = 18 eggs", "18", 1.0),
        ("#### 17", "18", 0.0),
        ("#### 18.5", "18", 0.0),
        ("#### 18.0000001", "18", 1.0),  # within the 1e-6 relative tolerance
        ("#### 17 \n but really 18", "18", 0.0),  # `####` wins over the last number
        (r"#### 17, \boxed{18}", "18", 0.0),  # `####` wins over the box
        (r"\boxed{18}. The answer is 17", "18", 1.0),  # the box wins over "the answer is"
        ("The answer is 18. Check: 18 - 1 = 17", "18", 1.0),  # ... which wins over the last number
        ("I don't know", "18", 0.0),
        ("", "18", 0.0),
        ("#### yes", "yes", 1.0),  # a non-numeric reference is compared as a string
    ],
)
def test_gsm8k_score(response, ground_truth, expected):
    score = gsm8k_score(response, ground_truth)
    assert isinstance(score, float)
    assert score == expected


MATH_CASES = [
    # fractions and decimals
    (r"\frac{1}{2}", "0.5", 1.0),
    (r"0.5", r"\frac{1}{2}", 1.0),
    (r"\dfrac12", r"\frac{1}{2}", 1.0),
    ("1/2", r"\frac12", 1.0),
    ("-0.75", r"-\frac{3}{4}", 1.0),
    (r"\frac{1}{3}", r"\frac{1}{2}", 0.0),
    # radicals
    (r"\sqrt{8}", r"2\sqrt{2}", 1.0),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", 1.0),
    # intervals
    ("(0,1]", "(0, 1]", 1.0),
    (r"\left(0, 1\right]", "(0, 1]", 1.0),
    ("(0,1)", "(0, 1]", 0.0),
    (r"(-\infty,0)", r"(-\infty, 0)", 1.0),
    # sets and tuples
    (r"\{2,1\}", r"\{1,2\}", 1.0),
    ("2, 1", "1, 2", 1.0),
    (r"\{1,3\}", r"\{1,2\}", 0.0),
    (r"\left(3,\frac{\pi}{2}\right)", r"\left( 3, \frac{\pi}{2} \right)", 1.0),
    # matrices
    (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 1.0),
    (r"\begin{pmatrix}1&2\\3&5\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0.0),
    # equations
    ("x=2", "2", 1.0),
    ("2", "x=2", 1.0),
    ("y=1+2x", "y=2x+1", 1.0),
    ("(x+1)^2", "x^2+2x+1", 1.0),
    # units, degrees, money, percent
    ("30", r"30^\circ", 1.0),
    (r"30^{\circ}", "30", 1.0),
    (r"5\text{ cm}", "5", 1.0),
    ("18", r"\$18", 1.0),
    (r"\$18.00", "18", 1.0),
    ("1000", r"1\,000", 1.0),  # thin-space thousands separator: the string fallback
    ("1000", "1{,}000", 1.0),
    (r"10\%", "0.1", 1.0),
    # text answers
    (r"\text{Evelyn}", r"\text{Evelyn}", 1.0),
    ("Evelyn", r"\text{Evelyn}", 1.0),
    ("C", r"\text{(C)}", 1.0),
    (r"\text{Tuesday}", r"\text{Monday}", 0.0),
    # plain wrong answers
    ("4", "3", 0.0),
    (r"\pi", "3", 0.0),
]


@pytest.mark.parametrize("answer,ground_truth,expected", MATH_CASES)
def test_math_score(answer, ground_truth, expected):
    score = math_score(f"Reasoning... so the answer is $\\boxed{{{answer}}}$.", ground_truth)
    assert isinstance(score, float)
    assert score == expected


@pytest.mark.parametrize(
    "response,ground_truth,expected",
    [
        ("The answer is 1/2.", "0.5", 0.0),  # no box, no credit
        (r"\boxed{}", "0.5", 0.0),
        (r"first \boxed{3}, finally \boxed{\frac12}", "0.5", 1.0),  # the last box counts
        (r"\boxed{\frac12}, no wait: \boxed{3}", "0.5", 0.0),
        (r"\boxed{\frac12}", r"We get $x = \boxed{\frac{1}{2}}$ after simplifying.", 1.0),  # a full solution
        (r"\fbox{0.5}", r"\frac{1}{2}", 1.0),
    ],
)
def test_math_score_extraction(response, ground_truth, expected):
    assert math_score(response, ground_truth) == expected


@pytest.mark.parametrize(
    "answer,expected",
    [
        (r"\left( 1, 2 \right)", "(1,2)"),
        (r"\dfrac{1}{2}.", r"\frac{1}{2}"),
        (r"30^\circ", "30"),
        (r"30^{\circ}", "30"),
        (r"5 \text{ cm}", "5"),
        (r"\text{Evelyn}", "Evelyn"),
        (r"1\,000\!", "1000"),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def _gsm8k_rows(limit: int) -> list[dict]:
    if not GSM8K_TEST.is_file():
        pytest.skip(f"{GSM8K_TEST} is absent")
    with GSM8K_TEST.open() as handle:
        return [json.loads(line) for line, _ in zip(handle, range(limit))]


def test_gsm8k_reference_solutions_score_one_and_off_by_one_scores_zero():
    rows = _gsm8k_rows(200)
    for row in rows:
        reference = row["answer"]
        assert gsm8k_score(reference, reference) == 1.0, reference
        body, answer = reference.rsplit("####", 1)
        wrong = float(answer.strip().replace(",", "")) + 1
        assert gsm8k_score(f"{body}#### {wrong:g}", reference) == 0.0, reference
        assert gsm8k_score(f"{body}The answer is {wrong:g}.", gsm8k_ground_truth(reference)) == 0.0


def _batch(responses: list[str], ground_truths: list[str]) -> Batch:
    n = len(responses)
    return Batch(non_tensors={"prompt_text": ["q"] * n, "response_text": responses, "ground_truth": ground_truths, "data_source": ["test"] * n})


def test_gsm8k_and_math_are_registered():
    assert {"gsm8k", "math"} <= set(REWARD_SOURCES)


def test_gsm8k_source_scores_a_batch_with_metrics():
    source = build_reward_source("gsm8k", {"num_workers": 1, "timeout_s": 2.0})
    try:
        output = source.score(_batch(["#### 18", "#### 17", r"\boxed{1,600}", "no idea"], ["18", "18", "#### 1,600", "3"]))
    finally:
        source.close()
    assert torch.equal(output.scores, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    assert output.scores.dtype == torch.float32
    assert output.metrics == {"accuracy": 0.5, "timeouts": 0.0, "errors": 0.0}


def test_math_source_scores_a_batch_with_metrics():
    source = build_reward_source("math", {"num_workers": 1})
    try:
        output = source.score(_batch([r"\boxed{\dfrac12}", r"\boxed{2\sqrt2}", "0.5"], ["0.5", r"\sqrt{8}", "0.5"]))
    finally:
        source.close()
    assert output.scores.tolist() == [1.0, 1.0, 0.0]
    assert output.metrics["accuracy"] == pytest.approx(2 / 3)
    assert output.metrics["timeouts"] == 0.0


def test_unknown_kwargs_are_rejected():
    with pytest.raises(TypeError):
        build_reward_source("math", {"timeout": 5})
