"""Environment classes as the pool runs them: a user's class loaded from its file
(`env: {type: class, path: my_env.py, name: MyEnv, kwargs: {...}}`), and :class:`Episodes`,
the instances of one class that one process steps.

A user's class runs in worker processes (:class:`rlhf.usercode.process.UserCodeProcess`
hosting :func:`host_user_env`), exactly as custom reward functions do: its file is imported
there, never in the driver, with a neutral `sys.argv`; a module that exits, hangs or crashes
at import stops only its worker. The class must be callable with env.kwargs and give objects
with `reset(row) -> str` and `step(action) -> rlhf.envs.base.Step`; `demo_action(rng) -> str`
is optional (the supervised warm start needs it). One instance is built when the worker
starts, as a check of the constructor and the methods, and one per episode after.

Mistakes visible before the run are ConfigErrors (exit 2) naming the key, the file and the
class: a missing file or class, an import that fails, a constructor that rejects env.kwargs,
reset/step/demo_action missing or taking the wrong number of arguments. Failures during the
run are EnvErrors (exit 1) naming the class, its file, the episode and the turn
(:mod:`rlhf.envs.errors`).
"""

from __future__ import annotations

import importlib
import inspect
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from rlhf.config.errors import ConfigError
from rlhf.config.validate import is_python_file
from rlhf.envs.base import Step
from rlhf.envs.errors import checked_step, checked_text, explain, raised
from rlhf.usercode.load import exec_user_file

METHODS = (("reset", "row"), ("step", "action"))
"""The methods every environment has, with the one argument each takes."""
DEMO_METHOD = ("demo_action", "rng")


class Episodes:
    """The episodes one process steps: an instance of `factory(**kwargs)` per episode id.

    Every failure of the environment's code becomes an EnvError naming `label`, the episode
    and the turn. `catch`: the exceptions turned into EnvErrors: Exception in the driver (a
    Ctrl-C stays a Ctrl-C), BaseException in a worker process (user code calling sys.exit).
    """

    def __init__(self, factory: Callable[..., Any], kwargs: dict[str, Any], label: str, can_demonstrate: bool,
                 catch: type[BaseException] = Exception):
        self.factory, self.kwargs, self.label = factory, dict(kwargs), label
        self.can_demonstrate, self.catch = can_demonstrate, catch
        self.envs: dict[int, Any] = {}

    def describe(self) -> tuple[str, bool]:
        """(the label messages use, whether the class has demo_action)."""
        return self.label, self.can_demonstrate

    def clear(self) -> None:
        """Drop every episode."""
        self.envs = {}

    def reset_one(self, episode: int, row: dict) -> str:
        """Build episode `episode`'s instance and reset it with `row`; its first observation."""
        where = f"{self.label}: reset of episode {episode}"
        try:
            env = self.factory(**self.kwargs)
        except self.catch as error:
            raise raised(f"{self.label}: building the instance of episode {episode}", error) from None
        try:
            observation = env.reset(row)
        except self.catch as error:
            raise raised(where, error) from None
        self.envs[episode] = env
        return checked_text(observation, where, "reset")

    def step_one(self, episode: int, action: str, turn: int) -> Step:
        """Episode `episode`'s answer to `action`, checked (turn: for messages)."""
        where = f"{self.label}: step of episode {episode} at turn {turn}"
        try:
            result = self.envs[episode].step(action)
        except self.catch as error:
            raise raised(where, error) from None
        return checked_step(result, where)

    def demo_one(self, episode: int, seed: int) -> str:
        """A demonstration action of episode `episode`, drawn with random.Random(seed)."""
        where = f"{self.label}: demo_action of episode {episode}"
        try:
            action = self.envs[episode].demo_action(random.Random(seed))
        except self.catch as error:
            raise raised(where, error) from None
        return checked_text(action, where, "demo_action")


def host_user_env(path: str, name: str, kwargs: dict[str, Any]) -> Episodes:
    """Built in a worker process: the Episodes of class `name` of `path`, checked (ConfigError)."""
    sys.argv = [path]  # the trainer's command line is none of the module's business
    module, where = import_user_module(path, name)
    cls = getattr(module, name, None)
    label = f"environment class {name!r} ({where})"
    if cls is None:
        defined = sorted(key for key, value in vars(module).items()
                         if inspect.isclass(value) and value.__module__ == module.__name__)
        raise ConfigError(f"env.name: {where} has no class {name!r} (classes defined there: {', '.join(defined) or 'none'})")
    if not callable(cls):
        raise ConfigError(f"env.name: {name!r} in {where} is a {type(cls).__name__}, not a class")
    can_demonstrate = check_environment(cls, kwargs, label, catch=BaseException)
    return Episodes(cls, kwargs, label, can_demonstrate, catch=BaseException)


def check_environment(cls: Callable[..., Any], kwargs: dict[str, Any], label: str,
                      catch: type[BaseException] = Exception) -> bool:
    """Check that `cls(**kwargs)` builds an environment: one instance is built, and its reset
    and step (and demo_action, when it has one) must take one argument. ConfigError
    otherwise; returns whether it can demonstrate (has demo_action)."""
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as error:
        raise ConfigError(f"env.kwargs: {label} cannot be built with the recipe's kwargs {kwargs}: {error}") from None
    except ValueError:  # no signature to read (a C type): building it below tells
        pass
    try:
        instance = cls(**kwargs)
    except catch as error:
        raise ConfigError(f"env.kwargs: building {label} with kwargs {kwargs} raised {explain(error)[0]}") from None
    for method, argument in METHODS:
        if not callable(getattr(instance, method, None)):
            raise ConfigError(f"env.name: {label} has no method {method}({argument}); an environment needs "
                              "reset(row) -> str and step(action) -> rlhf.envs.base.Step")
        _check_arity(getattr(instance, method), method, argument, label)
    demo = getattr(instance, DEMO_METHOD[0], None)
    if demo is not None:
        if not callable(demo):
            raise ConfigError(f"env.name: {label} has a demo_action that is not a method")
        _check_arity(demo, *DEMO_METHOD, label)
    return demo is not None


def _check_arity(method: Callable[..., Any], name: str, argument: str, label: str) -> None:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # no signature to read: calls will tell
        return
    try:
        signature.bind(None)
    except TypeError:
        raise ConfigError(f"env.name: {label}.{name} must take one argument ({argument}) besides self; "
                          f"its signature is {name}{signature}") from None


def import_user_module(path: str, name: str) -> tuple[ModuleType, str]:
    """(the module at `path`: a .py file, or a dotted module name; where it lives, for
    messages). ConfigError when it is missing or its import fails, however it fails."""
    if not is_python_file(path):
        try:
            return importlib.import_module(path), f"module {path}"
        except BaseException as error:  # anything, SystemExit included: only this worker stops
            raise ConfigError(f"env.path: cannot import module {path} (for environment class {name!r}): "
                              f"{explain(error)[0]}{_exit_note(error)}") from None
    file = Path(path).expanduser()
    if not file.is_file():
        relative = "" if file.is_absolute() else f" (relative to {Path.cwd()})"
        raise ConfigError(f"env.path: the file {str(file)!r} of environment class {name!r} does not exist{relative}")
    try:
        module = exec_user_file(file, "rlhf_user_env")
    except BaseException as error:  # as above
        raise ConfigError(f"env.path: cannot import {file} (for environment class {name!r}): "
                          f"{explain(error)[0]}{_exit_note(error)}") from None
    return module, str(file)


def _exit_note(error: BaseException) -> str:
    if not isinstance(error, SystemExit):
        return ""
    return (" (it exited while being imported; the file is imported, not run: parse command-line arguments and "
            "call sys.exit only under `if __name__ == \"__main__\":`)")
