"""guess_number: the rules, tolerant parsing, binary search within ceil(log2(n + 1)) guesses,
demonstrations that stay legal, and texts the tiny character-level model can read."""

from __future__ import annotations

import math
import random

import pytest

from rlhf.data.env_tasks import env_task_rows
from rlhf.envs.base import Demonstrator, Environment
from rlhf.envs.guess_number import INVALID, GuessNumber, parse_guess, prompt_text
from rlhf.models.tokenizer import CHARACTERS


def started(target: int, n: int = 16) -> GuessNumber:
    env = GuessNumber()
    assert env.reset({"ground_truth": str(target), "n": n}) == ""
    return env


def test_it_answers_higher_lower_and_correct_and_rewards_only_the_right_guess():
    env = started(11)
    assert isinstance(env, Environment) and isinstance(env, Demonstrator)
    low, high, right = env.step("3"), env.step("14"), env.step("11")
    assert (low.observation, low.reward, low.done, low.info) == ("higher", 0.0, False, {"success": False})
    assert (high.observation, high.reward, high.done, high.info) == ("lower", 0.0, False, {"success": False})
    assert (right.observation, right.reward, right.done, right.info) == ("correct", 1.0, True, {"success": True})


@pytest.mark.parametrize("action, guess", [("7", 7), ("I guess 7.", 7), (" 07\n", 7), ("-3", -3), ("12 or 5", 12),
                                           ("9" * 40, 10**18), ("-" + "9" * 5000, -(10**18)), ("seven", None), ("", None)])
def test_a_guess_is_the_first_integer_in_the_action(action, guess):
    assert parse_guess(action) == guess


def test_an_action_without_a_number_is_an_invalid_move_that_uses_the_turn():
    step = started(4).step("no idea")
    assert (step.observation, step.reward, step.done, step.info) == (INVALID, 0.0, False, {"success": False, "invalid": True})


def test_guesses_outside_the_range_are_answered_truthfully():
    env = started(4)
    assert env.step("99").observation == "lower" and env.step("-5").observation == "higher"
    assert env.demo_action(random.Random(0)) in [str(i) for i in range(16)]


@pytest.mark.parametrize("n", [1, 2, 5, 16, 33])
def test_binary_search_finds_every_target_within_ceil_log2_n_plus_1_guesses(n):
    for target in range(n):
        env, low, high = started(target, n), 0, n - 1
        for turn in range(math.ceil(math.log2(n + 1))):
            guess = (low + high) // 2
            step = env.step(str(guess))
            if step.done:
                break
            low, high = (guess + 1, high) if step.observation == "higher" else (low, guess - 1)
        assert step.done and step.info["success"], (n, target)


def test_demo_actions_stay_within_what_the_answers_allow_and_succeed_sometimes_not_always():
    rng, wins = random.Random(0), 0
    for episode in range(400):
        target = episode % 16
        env, low, high = started(target), 0, 15
        for _ in range(5):
            guess = int(env.demo_action(rng))
            assert low <= guess <= high
            step = env.step(str(guess))
            if step.done:
                wins += 1
                break
            low, high = (guess + 1, high) if step.observation == "higher" else (low, guess - 1)
    assert 0.3 < wins / 400 < 0.95  # legal and informative, but not binary search


def test_the_rows_n_and_the_recipes_n_must_agree_and_the_target_must_be_in_range():
    with pytest.raises(ValueError, match="n = 16 but env.kwargs has n = 8"):
        GuessNumber(n=8).reset({"ground_truth": "3", "n": 16})
    with pytest.raises(ValueError, match="outside"):
        GuessNumber().reset({"ground_truth": "16"})
    with pytest.raises(ValueError, match="hidden integer"):
        GuessNumber().reset({"ground_truth": "five"})
    with pytest.raises(ValueError, match="n must be an integer"):
        GuessNumber(n=0)
    env = GuessNumber(n=4)  # rows without n take env.kwargs' n
    env.reset({"ground_truth": "3"})
    assert env.high == 3


def test_every_text_is_in_the_tiny_tokenizers_vocabulary():
    texts = [prompt_text(16), INVALID, "higher", "lower", "correct", *(row["prompt"] for row in env_task_rows("guess_number", "test", 4, 0))]
    assert all(c in CHARACTERS for text in texts for c in text)
    assert len(prompt_text(16)) <= 12
