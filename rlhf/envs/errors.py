"""What can go wrong while episodes run, and the check of what an environment returns.

An :class:`EnvError` stops a run (exit status 1): an environment's `reset` or `step` raised,
returned something that is not a :class:`~rlhf.envs.base.Step`, hung past `env.timeout_s`, or
its worker process died. Mistakes visible before the run (a missing file or class, a wrong
signature, a constructor that rejects `env.kwargs`) are ConfigErrors instead
(:mod:`rlhf.envs.user_class`). The message names the environment, the episode and the turn,
and for an exception the user's line, with the trimmed traceback on the lines after it.

Both the driver and an environment's worker process import this module: only the standard
library, :mod:`rlhf.envs.base` and :mod:`rlhf.usercode.report`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from rlhf.envs.base import Step
from rlhf.usercode import report
from rlhf.usercode.report import plain_scalar, short

STEP_FORM = "rlhf.envs.base.Step(observation: str, reward: float, done: bool, info: dict)"
"""What `step` must return, for messages."""


class EnvError(RuntimeError):
    """An environment failed during a run; the message names it, the episode and the turn."""


def checked_step(result: Any, where: str) -> Step:
    """`result` as a Step with a plain float reward and bool done, or EnvError saying what is
    wrong with it. `where`: "environment X, step of episode 3 at turn 2", starts the message."""
    if not isinstance(result, Step):
        hint = " (wrap the values: Step(observation, reward, done, info))" if isinstance(result, (tuple, list, dict)) else ""
        raise EnvError(f"{where} returned {short(result)} of type {type(result).__name__}; step must return {STEP_FORM}{hint}")
    if not isinstance(result.observation, str):
        raise EnvError(f"{where} returned a Step whose observation is {short(result.observation)} "
                       f"({type(result.observation).__name__}); it must be a str ('' for none)")
    reward = plain_scalar(result.reward)
    if not isinstance(reward, numbers.Real) or not math.isfinite(float(reward)):
        raise EnvError(f"{where} returned a Step whose reward is {short(result.reward)} "
                       f"({type(result.reward).__name__}); it must be a finite number")
    done = plain_scalar(result.done)  # numpy's bool is common in environments that use numpy
    if not isinstance(done, bool):
        raise EnvError(f"{where} returned a Step whose done is {short(done)} ({type(done).__name__}); it must be a bool")
    if not isinstance(result.info, dict):
        raise EnvError(f"{where} returned a Step whose info is {short(result.info)} ({type(result.info).__name__}); it must be a dict")
    info = _plain(result.info, where, "info", 0)
    if info.get("success") is not None and not isinstance(info["success"], bool):
        raise EnvError(f"{where} returned info['success'] = {short(info['success'])}; it must be a bool (or None, or absent)")
    return Step(result.observation, float(reward), done, info)


_MAX_DEPTH = 8


def _plain(value: Any, where: str, name: str, depth: int) -> Any:
    """`value` (`name`: where it sits in info) with numpy scalars as Python numbers, tuples as
    lists; EnvError for anything that is not plain data. Plain data unpickles in any process
    (an object of the user's module would not, in the driver) and goes into samples.jsonl."""
    value = plain_scalar(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if depth < _MAX_DEPTH and isinstance(value, (list, tuple)):
        return [_plain(item, where, f"{name}[{i}]", depth + 1) for i, item in enumerate(value)]
    if depth < _MAX_DEPTH and isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: _plain(item, where, f"{name}[{key!r}]", depth + 1) for key, item in value.items()}
    raise EnvError(f"{where} returned {name} = {short(value)} ({type(value).__name__}); info may hold only plain values "
                   f"(str, numbers, bools, None, and lists and str-keyed dicts of them, nested at most {_MAX_DEPTH} deep)")


def checked_text(result: Any, where: str, what: str) -> str:
    """`result` when it is a str, else EnvError: `what` names the method ("reset", "demo_action")."""
    if not isinstance(result, str):
        raise EnvError(f"{where} returned {short(result)} of type {type(result).__name__}; {what} must return a str")
    return result


def raised(where: str, error: BaseException) -> EnvError:
    """The EnvError for an exception that escaped an environment's method: its cause and the
    user's line, then the traceback trimmed to the user's frames."""
    summary, details = explain(error)
    return EnvError(f"{where} raised {summary}\n{details}")


def explain(error: BaseException) -> tuple[str, str]:
    """(the exception and the user's line, the traceback trimmed to the user's frames): see
    :func:`rlhf.usercode.report.explain`."""
    return report.explain(error, _is_ours)


def _is_ours(filename: str) -> bool:
    """A frame of this package's calling code (the pool, the host), which the user need not see."""
    return filename.endswith(("rlhf/envs/user_class.py", "rlhf/envs/pool.py"))
