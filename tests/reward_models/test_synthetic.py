"""Synthetic reward-model data: deterministic by seed, disjoint train/held-out operand pairs,
corruptions always wrong, step labels by the Math-Shepherd rule."""

import random

import pytest

from reward_models.synthetic import (
    ANSWER_PREFIX,
    corrupt_answer,
    labelled_responses,
    preference_pairs,
    solution_steps,
    step_labelled_solutions,
)
from rlhf.models.tokenizer import CHARACTERS

BUILDERS = [preference_pairs, labelled_responses, step_labelled_solutions]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_deterministic_by_seed(builder):
    assert builder("train", seed=3, size=200) == builder("train", seed=3, size=200)
    assert builder("train", seed=3, size=200) != builder("train", seed=4, size=200)


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_train_and_held_out_operand_pairs_are_disjoint_and_cover_the_task(builder):
    train, test = builder("train"), builder("test")
    train_prompts, test_prompts = {e["prompt"] for e in train}, {e["prompt"] for e in test}
    assert len(train) == 9000 and len(test) == 1000
    assert not train_prompts & test_prompts and len(train_prompts | test_prompts) == 10_000


def test_every_corruption_is_wrong_non_negative_and_in_the_char_vocabulary():
    rng = random.Random(0)
    for a in range(100):
        for b in range(100):
            wrong = corrupt_answer(a, b, rng)
            assert wrong.isdigit() and int(wrong) != a + b and str(int(wrong)) == wrong


def test_pairs_and_labels_agree_with_the_sums():
    for pair in preference_pairs("test"):
        a, b = map(int, pair["prompt"][:-1].split("+"))
        assert pair["chosen"] == str(a + b) != pair["rejected"]
    examples = labelled_responses("test", error_fraction=0.3)
    for example in examples:
        a, b = map(int, example["prompt"][:-1].split("+"))
        assert example["label"] == int(example["response"] == str(a + b))
    assert 0.2 < sum(e["label"] == 0 for e in examples) / len(examples) < 0.4


def test_a_correct_solution_adds_column_by_column():
    assert solution_steps(7, 45, 2) == ["7+5=12", "0+4+1=5", f"{ANSWER_PREFIX}52"]
    assert solution_steps(99, 99, 2) == ["9+9=18", "9+9+1=19", f"{ANSWER_PREFIX}198"]
    assert solution_steps(3, 4, 1) == ["3+4=7", f"{ANSWER_PREFIX}7"]


@pytest.mark.parametrize("error_step", [0, 1, 2])
def test_an_injected_error_makes_the_answer_wrong(error_step):
    rng = random.Random(error_step)
    for a, b in [(7, 45), (99, 99), (0, 0), (50, 50), (19, 81)]:
        steps = solution_steps(a, b, 2, error_step, rng)
        correct = solution_steps(a, b, 2)
        assert steps[:error_step] == correct[:error_step] and steps[error_step] != correct[error_step]
        assert steps[-1] != correct[-1]


def test_step_labels_follow_math_shepherd():
    """Good before the first error, bad from it on; no error: all good."""
    solutions = step_labelled_solutions("train", size=2000)
    for solution in solutions:
        a, b = map(int, solution["prompt"][:-1].split("+"))
        labels, correct = solution["labels"], solution_steps(a, b, 2)
        first_bad = next((i for i, (s, c) in enumerate(zip(solution["steps"], correct)) if s != c), len(correct))
        assert labels == [1] * first_bad + [0] * (len(correct) - first_bad)
    error_share = sum(0 in s["labels"] for s in solutions) / len(solutions)
    assert 0.45 < error_share < 0.55
    assert all(char in CHARACTERS for s in solutions for step in s["steps"] for char in step)
