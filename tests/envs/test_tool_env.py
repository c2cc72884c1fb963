"""The `tool` environment: tool calls become observations, a final answer ends the episode for
the reward sources to score, bad kwargs are named, and the demonstration policy is legal and
succeeds often enough (but not always) on the multiplication task."""

from __future__ import annotations

import random

import pytest

from rlhf.data.multiplication import multiplication_rows
from rlhf.envs.base import Demonstrator, Environment, Step
from rlhf.envs.registry import builtin_env_class
from rlhf.envs.tool_env import ToolEnv
from rlhf.envs.tools.calls import parse_tool_call
from rlhf.models.tokenizer import CHARACTERS
from rlhf.rewards.arithmetic import arithmetic_score

ROW = {"prompt": "123*4567=", "ground_truth": "561741"}


def test_a_calculator_call_then_a_final_answer():
    env = builtin_env_class("tool")()
    assert isinstance(env, ToolEnv) and isinstance(env, Environment) and isinstance(env, Demonstrator)
    assert env.reset(ROW) == ""
    assert env.step("<calc>123*4567</calc>") == Step("561741", 0.0, False, {"tool_calls": 1})
    assert env.step("<calc>1/0</calc>") == Step("error: division by zero", 0.0, False, {"tool_calls": 1})
    final = env.step("561741")
    assert final == Step("", 0.0, True, {"answer": "561741", "tool_calls": 0})
    assert arithmetic_score(final.info["answer"], ROW["ground_truth"]) == 1.0


def test_disabled_and_unreadable_calls_are_error_observations():
    env = ToolEnv(tools=["calculator"])
    env.reset(ROW)
    disabled = env.step("<python>print(1)</python>")
    assert disabled.observation == "error: unknown tool 'python'; available: calculator" and not disabled.done
    unreadable = env.step("<tool_call>{oops}</tool_call>")
    assert unreadable.observation.startswith("error: the tool call is not valid JSON") and not unreadable.done


def test_the_python_tool_runs_in_the_sandbox_and_its_failures_are_observations():
    env = ToolEnv(tools=["calculator", "python"], python={"timeout_s": 1.0, "cpu_s": 1}, max_observation_chars=100)
    env.reset(ROW)
    json_call = '<tool_call>\n{"name": "python", "arguments": {"code": "print(123*4567)"}}\n</tool_call>'
    assert env.step(json_call).observation == "561741"
    assert env.step("<python>while True: pass</python>").observation == "[killed: timeout]"
    flood = env.step("<python>print('y' * 10000)</python>").observation
    assert len(flood) <= 100 and flood.startswith("yyy")


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"tools": []}, "env.kwargs.tools"),
        ({"tools": ["search"]}, "env.kwargs.tools"),
        ({"python": {"timeout": 3}}, "env.kwargs.python"),
        ({"max_observation_chars": 0}, "env.kwargs.max_observation_chars"),
    ],
)
def test_bad_kwargs_name_their_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        ToolEnv(**kwargs)


def test_the_hint_and_every_text_fit_the_character_tokenizer():
    hint = ToolEnv(tools=["calculator", "python"], hint=True).reset(ROW)
    assert hint == "tools: <calc>expression</calc>, <python>code</python>; then answer"
    assert set(hint) <= set(CHARACTERS)
    assert ToolEnv(hint=True).reset(ROW) == "tools: <calc>expression</calc>; then answer"


def _play(env: ToolEnv, row: dict, rng: random.Random, max_turns: int = 4) -> tuple[float, list[str]]:
    env.reset(row)
    actions = []
    for _ in range(max_turns):
        action = env.demo_action(rng)
        actions.append(action)
        step = env.step(action)
        if step.done:
            return arithmetic_score(step.info["answer"], row["ground_truth"]), actions
    return 0.0, actions


def test_the_demonstrations_are_legal_and_succeed_sometimes():
    rng = random.Random(0)
    rows = multiplication_rows("train", 400)
    scores = []
    for row in rows:
        score, actions = _play(ToolEnv(), row, rng)
        scores.append(score)
        assert all(set(action) <= set(CHARACTERS) for action in actions)
        calls = [parse_tool_call(action) for action in actions[:-1]]
        assert all(call is not None and call.error is None for call in calls)
        assert parse_tool_call(actions[-1]) is None  # every episode ends with an answer
    success = sum(scores) / len(scores)
    assert 0.25 <= success <= 0.55, success


def test_demonstrations_with_only_the_python_tool_call_python():
    rng = random.Random(1)
    env = ToolEnv(tools=["python"], python={"timeout_s": 2.0})
    env.reset(ROW)
    for _ in range(20):
        action = env.demo_action(rng)
        if parse_tool_call(action):
            assert parse_tool_call(action).name == "python"
            return
    pytest.fail("the demo never called the tool")
