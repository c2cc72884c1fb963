"""A user's environment class through the pool: it runs in worker processes (never imported by
the driver), in parallel with env.workers 2; every mistake visible before the run is a
ConfigError naming the key, file and class; every failure during it an EnvError naming the
class, its file, the episode and the turn; a step that hangs is stopped by env.timeout_s."""

from __future__ import annotations

import os
import random
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from process_helpers import alive

from rlhf.config.env_schema import EnvConfig
from rlhf.config.errors import ConfigError
from rlhf.envs.errors import EnvError
from rlhf.envs.pool import build_env_pool

COUNTER = """\
import os, time
from pathlib import Path
from rlhf.envs.base import Step

with open(Path(__file__).with_name("imported_by"), "a") as marker:
    marker.write(f"{os.getpid()}\\n")

class Counter:
    '''Done after `goal` actions; observations count them.'''
    def __init__(self, goal=2, delay=0.0):
        self.goal, self.delay = goal, delay

    def reset(self, row):
        self.count = 0
        return "start " + row["prompt"]

    def step(self, action):
        time.sleep(self.delay)
        self.count += 1
        done = self.count >= self.goal
        return Step(action + str(self.count), float(done), done, {"success": done, "pid": os.getpid()})

    def demo_action(self, rng):
        return str(rng.randint(0, 9))
"""


def write(tmp_path: Path, body: str, header: str = "from rlhf.envs.base import Step\n") -> str:
    path = tmp_path / "my_env.py"
    path.write_text(header + textwrap.dedent(body))
    return str(path)


def pool_of(path: str, name: str = "Env", **config):
    return build_env_pool(EnvConfig(type="class", path=path, name=name, **config))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_good_class_plays_its_episodes_in_worker_processes_the_driver_never_imports(tmp_path, workers):
    path = write(tmp_path, COUNTER, header="")
    with pool_of(path, "Counter", kwargs={"goal": 2}, workers=workers) as pool:
        assert pool.can_demonstrate and pool.label == f"environment class 'Counter' ({path})"
        assert pool.reset([{"prompt": f"p{i}"} for i in range(3)]) == ["start p0", "start p1", "start p2"]
        first = pool.step({0: "a", 1: "b", 2: "c"}, turn=0)
        assert [(s.observation, s.reward, s.done) for s in first.values()] == [("a1", 0.0, False), ("b1", 0.0, False), ("c1", 0.0, False)]
        second = pool.step({2: "z"}, turn=1)
        assert list(second) == [2] and (second[2].observation, second[2].reward, second[2].done, second[2].info["success"]) == ("z2", 1.0, True, True)
        demos = pool.demo_actions([0, 1], random.Random(5))
        assert demos == pool.demo_actions([0, 1], random.Random(5)) and all(d.isdigit() for d in demos.values())
        pids = {step.info["pid"] for step in first.values()}
    assert len(pids) == workers and os.getpid() not in pids
    importers = {int(line) for line in (tmp_path / "imported_by").read_text().split()}
    assert os.getpid() not in importers
    assert not any(getattr(module, "__file__", None) == path for module in list(sys.modules.values()))


def test_two_workers_step_slow_episodes_at_the_same_time(tmp_path):
    path = write(tmp_path, COUNTER, header="")
    with pool_of(path, "Counter", kwargs={"delay": 0.4}, workers=2) as pool:
        pool.reset([{"prompt": ""}] * 4)
        started = time.monotonic()
        pool.step({i: "x" for i in range(4)}, turn=0)
        assert time.monotonic() - started < 1.4  # 4 x 0.4 s one after the other would be 1.6 s


def test_a_new_reset_drops_the_earlier_episodes(tmp_path):
    with pool_of(write(tmp_path, COUNTER, header=""), "Counter") as pool:
        pool.reset([{"prompt": ""}] * 3)
        pool.reset([{"prompt": ""}])
        with pytest.raises(ValueError, match=r"no episodes \[1, 2\]; the last reset started episodes 0..0"):
            pool.step({1: "x", 2: "y"}, turn=0)


CONFIG_ERRORS = {
    "missing class": ("class Other:\n    pass\n", {}, r"env.name: .*my_env.py has no class 'Env' \(classes defined there: Other\)"),
    "no step": ("class Env:\n    def reset(self, row):\n        return ''\n", {}, r"has no method step\(action\)"),
    "reset takes two": ("""
        class Env:
            def reset(self, row, seed):
                return ''
            def step(self, action):
                return Step('', 0.0, True, {})
        """, {}, r"Env' \(.*my_env.py\).reset must take one argument \(row\) besides self; its signature is reset\(row, seed\)"),
    "step takes none": ("""
        class Env:
            def reset(self, row):
                return ''
            def step(self):
                return Step('', 0.0, True, {})
        """, {}, r"\.step must take one argument \(action\)"),
    "demo takes none": ("""
        class Env:
            def reset(self, row):
                return ''
            def step(self, action):
                return Step('', 0.0, True, {})
            def demo_action(self):
                return ''
        """, {}, r"\.demo_action must take one argument \(rng\)"),
    "unknown kwarg": ("""
        class Env:
            def __init__(self, size=3):
                pass
            def reset(self, row):
                return ''
            def step(self, action):
                return Step('', 0.0, True, {})
        """, {"colour": "red"}, r"env.kwargs: environment class 'Env' .* cannot be built with the recipe's kwargs \{'colour': 'red'\}: .*colour"),
    "constructor raises": ("""
        class Env:
            def __init__(self, size=3):
                if size > 5:
                    raise ValueError("size must be at most 5")
            def reset(self, row):
                return ''
            def step(self, action):
                return Step('', 0.0, True, {})
        """, {"size": 9}, r"env.kwargs: building environment class 'Env' .* raised ValueError: size must be at most 5 \(at line 6 of .*my_env.py, in __init__\)"),
    "import fails": ("import not_a_module_anywhere\n", {}, r"env.path: cannot import .*my_env.py \(for environment class 'Env'\): ModuleNotFoundError"),
    "exits at import": ("import sys\nsys.exit('usage: my_env.py --size N')\n", {}, r"SystemExit: usage.*it exited while being imported"),
}


@pytest.mark.parametrize("case", list(CONFIG_ERRORS))
def test_a_class_that_cannot_serve_is_a_config_error_naming_the_key_file_and_class(tmp_path, case):
    body, kwargs, message = CONFIG_ERRORS[case]
    with pytest.raises(ConfigError, match=message):
        pool_of(write(tmp_path, body), kwargs=kwargs)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"env.path: the file '.*nowhere.py' of environment class 'Env' does not exist"):
        pool_of(str(tmp_path / "nowhere.py"))
    with pytest.raises(ConfigError, match="env.type: unknown environment 'chess'; valid ones: guess_number, twenty_questions, tool, class"):
        build_env_pool(EnvConfig(type="chess"))


GOOD_RESET = """
    class Env:
        def reset(self, row):
            self.turn = 0
            return ''
        def step(self, action):
            self.turn += 1
            return self.answer(action)
"""
RUNTIME_ERRORS = {
    "step raises": ("""
        def answer(self, action):
            if action == "boom":
                raise KeyError("no such move")
            return Step("ok", 0.0, False, {})
        """, r"environment class 'Env' \(.*my_env.py\): step of episode 1 at turn 3 raised KeyError: 'no such move' "
             r"\(at line 13 of .*my_env.py, in answer\)\nTraceback \(most recent call last\):\n.*line 9, in step"),
    "tuple": ("""
        def answer(self, action):
            return ("ok", 0.0, False, {}) if action == "boom" else Step("ok")
        """, r"step of episode 1 at turn 3 returned \('ok', 0.0, False, \{\}\) of type tuple; step must return "
             r"rlhf.envs.base.Step\(.*\) \(wrap the values"),
    "nan reward": ("""
        def answer(self, action):
            return Step("ok", float("nan") if action == "boom" else 0.0)
        """, r"step of episode 1 at turn 3 returned a Step whose reward is nan \(float\); it must be a finite number"),
    "object in info": ("""
        def answer(self, action):
            return Step("ok", 0.0, False, {"board": object()} if action == "boom" else {})
        """, r"step of episode 1 at turn 3 returned info\['board'\] = <object object at .*> \(object\); info may hold only plain values"),
    "exits": ("""
        def answer(self, action):
            if action == "boom":
                import os
                os._exit(3)
            return Step("ok")
        """, r"the worker process died during step of episode 1 at turn 3: its process exited with status 3"),
    "sys.exit": ("""
        def answer(self, action):
            if action == "boom":
                raise SystemExit(4)
            return Step("ok")
        """, r"step of episode 1 at turn 3 raised SystemExit: 4"),
}


@pytest.mark.parametrize("case", list(RUNTIME_ERRORS))
@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_step_is_an_env_error_naming_class_file_episode_and_turn(tmp_path, case, workers):
    body, message = RUNTIME_ERRORS[case]
    path = write(tmp_path, textwrap.dedent(GOOD_RESET) + textwrap.indent(textwrap.dedent(body), "    "))
    with pool_of(path, workers=workers) as pool:
        pool.reset([{}, {}, {}])
        for turn in range(3):
            pool.step({0: "fine", 1: "fine", 2: "fine"}, turn)
        with pytest.raises(EnvError, match=message):
            pool.step({0: "fine", 1: "boom", 2: "fine"}, turn=3)
        with pytest.raises(EnvError, match="the episodes cannot go on .*an episode failed"):
            pool.step({0: "fine"}, turn=4)
        pool.reset([{}])  # a fresh batch works again
        assert pool.step({0: "fine"}, turn=0)[0].observation == "ok"


def test_a_failing_reset_names_the_episode(tmp_path):
    path = write(tmp_path, """
        class Env:
            def reset(self, row):
                return row["missing"]
            def step(self, action):
                return Step("")
    """)
    with pool_of(path) as pool, pytest.raises(EnvError, match=r"reset of episode 0 raised KeyError: 'missing' \(at line 5"):
        pool.reset([{}])


def test_a_hanging_step_is_stopped_by_env_timeout_s(tmp_path):
    path = write(tmp_path, """
        class Env:
            def reset(self, row):
                return ''
            def step(self, action):
                while action == "hang":
                    try:
                        pass
                    except BaseException:
                        pass
                return Step("ok")
    """)
    with pool_of(path, timeout_s=1.0, workers=2) as pool:
        pool.reset([{}, {}, {}])
        started = time.monotonic()
        with pytest.raises(EnvError, match=r"step of episode 2 at turn 5 did not return within env.timeout_s = 1 s; its worker process was killed"):
            pool.step({0: "fine", 1: "fine", 2: "hang"}, turn=5)
        assert time.monotonic() - started < 4.0


def test_demo_actions_of_a_class_without_demo_action_are_a_config_error(tmp_path):
    path = write(tmp_path, """
        class Env:
            def reset(self, row):
                return ''
            def step(self, action):
                return Step("")
    """)
    with pool_of(path) as pool:
        assert not pool.can_demonstrate
        pool.reset([{}])
        with pytest.raises(ConfigError, match="has no demo_action\\(rng\\) method, which the supervised warm start"):
            pool.demo_actions([0], random.Random(0))


def test_ctrl_c_while_workers_step_stops_them_at_once(tmp_path):
    path = write(tmp_path, """
        import time
        class Env:
            def reset(self, row):
                return ''
            def step(self, action):
                time.sleep(60)
    """)
    pool = pool_of(path, timeout_s=60.0, workers=2)
    pool.reset([{}, {}])
    pids = [shard.process.pid for shard in pool.shards]
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        pool.step({0: "a", 1: "b"}, turn=0)
    assert time.monotonic() - started < 5.0
    assert not any(alive(pid) for pid in pids)
