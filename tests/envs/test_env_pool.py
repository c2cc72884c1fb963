"""EnvPool with the built-in environments (in this process) and its checks of what an
environment returns; worker processes end with the pool."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
from process_helpers import descendants

from rlhf.config.env_schema import EnvConfig
from rlhf.config.errors import ConfigError
from rlhf.data.env_tasks import env_task_rows
from rlhf.envs.base import Step
from rlhf.envs.errors import EnvError, checked_step
from rlhf.envs.pool import EnvPool, LocalShard, build_env_pool
from rlhf.envs.user_class import Episodes


@pytest.mark.parametrize("name", ["guess_number", "twenty_questions"])
def test_built_in_episodes_played_by_their_demonstrations_through_the_pool(name):
    rows = env_task_rows(name, "test", 16, seed=0)
    with build_env_pool(EnvConfig(type=name)) as pool:
        assert pool.can_demonstrate and pool.label == f"environment {name!r}"
        assert pool.reset(rows) == [""] * 16
        rng, live, successes = random.Random(0), set(range(16)), 0
        for turn in range(30):
            actions = pool.demo_actions(sorted(live), rng)
            for i, step in pool.step(actions, turn).items():
                if step.done:
                    live.discard(i)
                    successes += step.info["success"]
            if not live:
                break
        assert successes == 16  # the demonstrations only make legal, consistent moves: all episodes end


def test_demo_actions_are_reproducible_from_the_rngs_state():
    with build_env_pool(EnvConfig(type="guess_number", kwargs={"n": 64})) as pool:
        pool.reset(env_task_rows("guess_number", "train", 8, 0, options={"n": 64}))
        assert pool.demo_actions(range(8), random.Random(3)) == pool.demo_actions(range(8), random.Random(3))


def test_built_in_kwargs_the_constructor_rejects_are_a_config_error():
    with pytest.raises(ConfigError, match=r"env.kwargs: environment 'guess_number' cannot be built with the recipe's kwargs \{'size': 3\}"):
        build_env_pool(EnvConfig(type="guess_number", kwargs={"size": 3}))
    with pytest.raises(ConfigError, match=r"env.kwargs: building environment 'guess_number' with kwargs \{'n': 0\} raised ValueError: guess_number: n must be"):
        build_env_pool(EnvConfig(type="guess_number", kwargs={"n": 0}))


def test_a_bad_row_is_an_env_error_naming_the_episode():
    with build_env_pool(EnvConfig(type="twenty_questions")) as pool:
        with pytest.raises(EnvError, match=r"environment 'twenty_questions': reset of episode 1 raised ValueError: .*'unicorn'"):
            pool.reset([{"ground_truth": "cat"}, {"ground_truth": "unicorn"}])
        with pytest.raises(EnvError, match=r"the episodes cannot go on \(an episode failed: .*reset of episode 1"):
            pool.step({0: "is it big?"}, turn=0)


def test_stepping_before_a_reset_or_with_a_non_text_action_is_refused():
    with build_env_pool(EnvConfig(type="guess_number")) as pool:
        with pytest.raises(EnvError, match="call reset first"):
            pool.step({0: "3"}, turn=0)
        pool.reset([{"ground_truth": "3"}])
        with pytest.raises(TypeError, match=r"the actions of episodes \[0\] are not str"):
            pool.step({0: 3}, turn=0)


class Returns:
    """An in-process environment whose step returns whatever the test gives it."""

    def __init__(self, result=None):
        self.result = result

    def reset(self, row):
        return ""

    def step(self, action):
        return self.result


@pytest.mark.parametrize("result, message", [
    (("ok", 0.0, False, {}), r"\('ok', 0.0, False, \{\}\) of type tuple; step must return rlhf.envs.base.Step"),
    (None, "None of type NoneType"),
    (Step(3), "observation is 3 \\(int\\); it must be a str"),
    (Step("", "1"), "reward is '1' \\(str\\); it must be a finite number"),
    (Step("", float("inf")), "reward is inf"),
    (Step("", 0.0, "yes"), "done is 'yes' \\(str\\); it must be a bool"),
    (Step("", 0.0, False, None), "info is None \\(NoneType\\); it must be a dict"),
    (Step("", 0.0, False, {"success": "yes"}), r"info\['success'\] = 'yes'; it must be a bool"),
    (Step("", 0.0, False, {"trace": [1, {"x": object()}]}), r"info\['trace'\]\[1\]\['x'\] = <object"),
    (Step("", 0.0, False, {3: "x"}), "info = \\{3: 'x'\\} \\(dict\\); info may hold only plain values"),
])
def test_what_a_step_returns_is_checked_and_a_wrong_type_names_the_episode_and_turn(result, message):
    pool = EnvPool([LocalShard(Episodes(Returns, {"result": result}, "environment class 'Returns' (test)", False))],
                   "environment class 'Returns' (test)", False)
    pool.reset([{}, {}])
    with pytest.raises(EnvError, match=r"environment class 'Returns' \(test\): step of episode 1 at turn 4 returned .*" + message):
        pool.step({1: "a"}, turn=4)


def test_numpy_values_become_plain_python_values():
    step = checked_step(Step("x", np.float32(0.5), np.bool_(True), {"success": np.bool_(True), "n": np.int64(3), "t": (1, 2)}), "here")
    assert step == Step("x", 0.5, True, {"success": True, "n": 3, "t": [1, 2]})
    assert type(step.reward) is float and type(step.info["n"]) is int
    assert checked_step(Step("", 0, False, {"success": None}), "here").info == {"success": None}  # success unknown


def test_closing_the_pool_ends_its_worker_processes(tmp_path):
    path = tmp_path / "env.py"
    path.write_text("from rlhf.envs.base import Step\nclass Env:\n    def reset(self, row):\n        return ''\n"
                    "    def step(self, action):\n        return Step('')\n")
    before = descendants()
    pool = build_env_pool(EnvConfig(type="class", path=str(path), name="Env", workers=3))
    pool.reset([{}] * 3)
    assert len(descendants() - before) >= 3
    pool.close()
    deadline = time.monotonic() + 5
    while descendants() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert descendants() - before == set()
    with pytest.raises(ValueError, match="the pool is closed"):
        pool.reset([{}])
