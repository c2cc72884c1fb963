"""What can go wrong while episodes run, and the check of what an environment returns.

An :class:`EnvError` stops a run (exit status 1): an environment's `reset` or `step` raised,
returned something that is not a :class:`~rlhf.envs.base.Step`, hung past `env.timeout_s`, or
its worker process died. Mistakes visible before the run (a missing file or class, a wrong
signature, a constructor that rejects `env.kwargs`) are ConfigErrors instead
(:mod:`rlhf.envs.user_class`). The message names the environment, the episode and the turn,
and for an exception the user's line, with the trimmed traceback on the lines after it.

Both the driver and an environment's worker process import this module: only the standard
library and :mod:`rlhf.envs.base`.
"""

from __future__ import annotations

import math
import numbers
import sysconfig
import traceback
from typing import Any

from rlhf.envs.base import Step

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
    reward = result.reward
    if getattr(reward, "ndim", None) == 0 and hasattr(reward, "item"):  # a numpy scalar or a 0-d tensor
        reward = reward.item()
    if not isinstance(reward, numbers.Real) or not math.isfinite(float(reward)):
        raise EnvError(f"{where} returned a Step whose reward is {short(result.reward)} "
                       f"({type(result.reward).__name__}); it must be a finite number")
    done = result.done
    if type(done).__name__ == "bool_":  # numpy's bool, common in environments that use numpy
        done = bool(done)
    if not isinstance(done, bool):
        raise EnvError(f"{where} returned a Step whose done is {short(done)} ({type(done).__name__}); it must be a bool")
    if not isinstance(result.info, dict):
        raise EnvError(f"{where} returned a Step whose info is {short(result.info)} ({type(result.info).__name__}); it must be a dict")
    success = result.info.get("success")
    if success is not None and type(success).__name__ not in ("bool", "bool_"):
        raise EnvError(f"{where} returned info['success'] = {short(success)}; it must be a bool (or absent)")
    return Step(result.observation, float(reward), done, result.info)


def checked_text(result: Any, where: str, what: str) -> str:
    """`result` when it is a str, else EnvError: `what` names the method ("reset", "demo_action")."""
    if not isinstance(result, str):
        raise EnvError(f"{where} returned {short(result)} of type {type(result).__name__}; {what} must return a str")
    return result


def raised(where: str, error: BaseException) -> EnvError:
    """The EnvError for an exception that escaped an environment's method: its cause and the
    user's line, then the traceback trimmed to the user's frames."""
    frames, last_user = _user_frames(error)
    line = ""
    if frames:
        frame = frames[last_user]
        line = f" (at line {frame.lineno} of {frame.filename}, in {frame.name})"
    details = ["Traceback (most recent call last):\n", *traceback.format_list(frames[: last_user + 1])]
    if len(frames) - 1 > last_user:
        details.append(f"  ... {len(frames) - 1 - last_user} frame(s) inside libraries\n")
    details.extend(traceback.format_exception_only(type(error), error))
    return EnvError(f"{where} raised {cause(error)}{line}\n{''.join(details).rstrip()}")


def cause(error: BaseException) -> str:
    """'ValueError: bad row', or just 'StopIteration' for an exception without a message."""
    try:
        text = str(error)
    except Exception:  # a user exception whose __str__ fails
        text = "<its message cannot be shown>"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters (and never failing)."""
    try:
        text = repr(value)
    except Exception:  # a huge int or a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _user_frames(error: BaseException) -> tuple[list[traceback.FrameSummary], int]:
    """(the exception's frames below rlhf's own, the index of the last one outside the
    standard library and installed packages)."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and _is_ours(frames[0].filename):
        frames.pop(0)
    library = tuple({sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")})
    last_user = max((i for i, frame in enumerate(frames) if not frame.filename.startswith(library)), default=len(frames) - 1)
    return frames, last_user


def _is_ours(filename: str) -> bool:
    """A frame of this package's calling code (the pool, the host), which the user need not see."""
    return filename.endswith(("rlhf/envs/user_class.py", "rlhf/envs/pool.py"))
