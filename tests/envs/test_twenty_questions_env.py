"""twenty_questions: the catalogue, the rules, tolerant parsing, halving questions that find every
object in log2(objects) questions, legal demonstrations, and texts in the tiny vocabulary."""

from __future__ import annotations

import json
import math
import random

import pytest

from rlhf.data.env_tasks import env_task_rows
from rlhf.envs.base import Demonstrator, Environment
from rlhf.envs.twenty_questions import INVALID, TwentyQuestions, load_catalogue, parse_move
from rlhf.models.tokenizer import CHARACTERS

CATALOGUE = load_catalogue()


def started(target: str) -> TwentyQuestions:
    env = TwentyQuestions()
    assert env.reset({"ground_truth": target}) == ""
    return env


def test_the_catalogue_identifies_every_object_by_its_attributes():
    assert 16 <= len(CATALOGUE.objects) <= 32 and 8 <= len(CATALOGUE.attributes) <= 12
    signatures = {has for has in CATALOGUE.objects.values()}
    assert len(signatures) == len(CATALOGUE.objects)


def test_questions_are_answered_and_a_right_guess_wins_while_a_wrong_one_is_just_no():
    env = started("cat")
    assert isinstance(env, Environment) and isinstance(env, Demonstrator)
    yes, no = env.step("is it alive?"), env.step("is it big?")
    assert (yes.observation, yes.reward, yes.done, yes.info) == ("yes", 0.0, False, {"success": False})
    assert (no.observation, no.done) == ("no", False)
    wrong = env.step("it is horse")
    assert (wrong.observation, wrong.reward, wrong.done, wrong.info) == ("no", 0.0, False, {"success": False})
    right = env.step("it is cat")
    assert (right.observation, right.reward, right.done, right.info) == ("yes", 1.0, True, {"success": True})


@pytest.mark.parametrize("action, word", [("is it big?", "big"), ("Is it a cat?", "cat"), ("IT IS CAT.", "cat"),
                                          ("Question: is it an eagle", "eagle"), ("it is   the kite!", "kite"),
                                          ("big?", None), ("it's a cat", None), ("", None)])
def test_the_word_asked_or_guessed_is_found_anywhere_in_the_action(action, word):
    assert parse_move(action) == word


def test_an_unknown_word_or_form_is_an_invalid_move_that_names_the_valid_forms():
    env = started("bee")
    for action in ("is it purple?", "what is it", "42"):
        step = env.step(action)
        assert (step.observation, step.reward, step.done, step.info) == (INVALID, 0.0, False, {"success": False, "invalid": True})
    assert env.step("is it flying?").observation == "yes"


def _halving_play(env: TwentyQuestions) -> int:
    """Ask the question that splits the remaining objects most evenly until one is left, then guess it."""
    for turn in range(1, 20):
        candidates = env.candidates()
        if len(candidates) == 1:
            step = env.step(f"it is {candidates[0]}")
            assert step.done and step.info["success"]
            return turn
        best = min(CATALOGUE.attributes, key=lambda a: abs(2 * sum(a in CATALOGUE.objects[c] for c in candidates) - len(candidates)))
        env.step(f"is it {best}?")
    raise AssertionError("never found")


def test_halving_questions_find_every_object_in_log2_objects_questions_then_a_guess():
    questions = math.ceil(math.log2(len(CATALOGUE.objects)))
    for target in CATALOGUE.objects:
        assert _halving_play(started(target)) == questions + 1, target


def test_demo_moves_are_legal_and_consistent_and_succeed_sometimes_not_always():
    rng, wins, episodes = random.Random(0), 0, 320
    objects = list(CATALOGUE.objects)
    for episode in range(episodes):
        env = started(objects[episode % len(objects)])
        for _ in range(5):
            action, candidates = env.demo_action(rng), env.candidates()
            word = parse_move(action)
            if word in CATALOGUE.attributes:
                assert action == f"is it {word}?"
                assert 0 < sum(word in CATALOGUE.objects[c] for c in candidates) < len(candidates)  # an informative question
            else:
                assert action == f"it is {word}" and word in candidates  # a guess the answers allow
            if env.step(action).done:
                wins += 1
                break
    assert 0.2 < wins / episodes < 0.8


def test_demos_that_always_ask_guess_only_the_last_candidate_and_a_bad_probability_is_refused():
    """demo_ask_probability 1.0: questions while one can split the candidates, then the one
    object left, so every demonstration that has the turns wins (none guesses blindly)."""
    rng, objects = random.Random(1), list(CATALOGUE.objects)
    for episode in range(64):
        env = TwentyQuestions(invalid_observation="?", demo_ask_probability=1.0)
        env.reset({"ground_truth": objects[episode % len(objects)]})
        for turn in range(len(CATALOGUE.attributes) + 1):
            action = env.demo_action(rng)
            if parse_move(action) in CATALOGUE.objects:
                assert env.candidates() == [parse_move(action)]
                assert env.step(action).done
                break
            env.step(action)
        else:
            raise AssertionError("the demonstration never guessed")
    for bad in (-0.1, 1.5, True, "always"):
        with pytest.raises(ValueError, match="demo_ask_probability must be a number in \\[0, 1\\]"):
            TwentyQuestions(demo_ask_probability=bad)


def test_a_catalogue_of_ones_own_through_env_kwargs_and_a_bad_one_names_the_file(tmp_path):
    path = tmp_path / "things.json"
    path.write_text(json.dumps({"attributes": ["red", "round"], "objects": {"apple": ["red", "round"], "banana": []}}))
    env = TwentyQuestions(catalogue=str(path))
    env.reset({"ground_truth": "banana"})
    assert env.step("is it red?").observation == "no" and env.step("it is banana").done
    rows = env_task_rows("twenty_questions", "train", 4, 0, options={"catalogue": str(path)})
    assert sorted(row["ground_truth"] for row in rows) == ["apple", "apple", "banana", "banana"]
    path.write_text(json.dumps({"attributes": ["red"], "objects": {"apple": ["round"]}}))
    with pytest.raises(ValueError, match=r"things.json: objects use attributes not in its 'attributes' list: \['round'\]"):
        TwentyQuestions(catalogue=str(path))
    path.write_text(json.dumps({"attributes": ["Red Thing"], "objects": {"apple": []}}))
    with pytest.raises(ValueError, match="lowercase words"):
        TwentyQuestions(catalogue=str(path))


def test_a_row_whose_object_is_not_in_the_catalogue_is_an_error():
    with pytest.raises(ValueError, match="'unicorn' is not an object of the catalogue"):
        TwentyQuestions().reset({"ground_truth": "unicorn"})


def test_every_text_is_in_the_tiny_tokenizers_vocabulary():
    texts = [INVALID, "yes", "no", *CATALOGUE.attributes, *CATALOGUE.objects,
             *(row["prompt"] for row in env_task_rows("twenty_questions", "test", 4, 0, long_prompt=True)),
             *(row["prompt"] for row in env_task_rows("twenty_questions", "test", 4, 0))]
    assert all(c in CHARACTERS for text in texts for c in text)
    assert max(map(len, CATALOGUE.objects)) <= 8 and max(map(len, CATALOGUE.attributes)) <= 8
