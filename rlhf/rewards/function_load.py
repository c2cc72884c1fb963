"""Importing a user's reward function and checking that its signature can take the call.

This runs in the function's worker process (:mod:`rlhf.rewards.function_host`), never in the
driver: a module that exits, parses the command line or hangs at import stops only that
process. Mistakes are ConfigErrors naming the function and the file (and where in the file).
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Collection, TextIO

from rlhf.config.errors import ConfigError
from rlhf.config.validate import is_python_file
from rlhf.usercode.load import exec_user_file

SAMPLE_ARGS = ("prompt", "response", "ground_truth")
"""Names of the three main arguments of a per-sample function."""
BATCH_ARGS = ("prompts", "responses", "ground_truths")
"""Names of the three main arguments of a batched function."""
NOT_EXTRA = frozenset({"prompt", "prompt_text", "response_text", "ground_truth", "group_index"})
"""Batch fields never passed as extra fields: the main arguments (and the rendered prompt)
and the loop's own bookkeeping."""
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class CallPlan:
    """How to call a user function, read from its signature once."""

    by_name: bool
    """Pass the three main arguments by name (the function has parameters so named), else by position."""
    any_keyword: bool
    """The function has `**extra`, so it gets every extra field."""
    keywords: frozenset[str]
    """Other parameter names it accepts by keyword."""

    def wants(self, name: str) -> bool:
        return self.any_keyword or name in self.keywords


def plan_call(fn: Callable, names: tuple[str, ...], kwargs: dict[str, Any], extra_fields: Collection[str] | None, label: str) -> CallPlan:
    """Check that `fn` can take the call with `names` as its main arguments and `kwargs`, and
    that every further parameter it requires is a dataset field (when `extra_fields` is known)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # some builtins have no signature: pass everything, trust them
        return CallPlan(by_name=False, any_keyword=True, keywords=frozenset())
    by_name = all(name in params and params[name].kind in _KEYWORD_KINDS for name in names)
    positional = [p.name for p in params.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    main = set(names) if by_name else set(positional[: len(names)])
    plan = CallPlan(by_name, any(p.kind is p.VAR_KEYWORD for p in params.values()),
                    frozenset(p.name for p in params.values() if p.kind in _KEYWORD_KINDS and p.name not in main))
    form = f"{names[0]}, {names[1]}, {names[2]}, **extra"
    clash = sorted(set(kwargs) & (set(names) | main))
    if clash:
        raise ConfigError(f"{label}: kwargs {clash} would replace main arguments of the call ({form}); rename them")
    unknown = sorted(k for k in kwargs if not plan.wants(k))
    if unknown:
        raise ConfigError(f"{label} takes no parameter(s) {unknown}, which the recipe passes as kwargs; "
                          "add them to its parameters or accept **extra")
    required = [p.name for p in params.values() if p.kind in _KEYWORD_KINDS and p.default is p.empty
                and p.name not in main and p.name not in kwargs]
    missing = [name for name in required if extra_fields is not None and name not in extra_fields]
    if missing:
        raise ConfigError(f"{label} requires parameter(s) {missing}, which are neither dataset fields "
                          f"(the rows have: {', '.join(sorted(extra_fields or ())) or 'none'}) nor recipe kwargs")
    keywords = {**{name: None for name in (required if extra_fields is None else extra_fields) if plan.wants(name)}, **kwargs}
    try:
        if by_name:
            inspect.signature(fn).bind(**dict.fromkeys(names), **keywords)
        else:
            inspect.signature(fn).bind(*[None] * len(names), **keywords)
    except TypeError as error:
        raise ConfigError(f"{label} cannot be called as ({form}): {error}; it must accept "
                          f"{', '.join(names)} by position or by these names") from None
    return plan


def load_function(path: str, name: str) -> tuple[Callable, str]:
    """(the function `name` of `path`, a description of where it lives for messages).

    A .py `path` is imported under a module name of its own (two recipes may both use a file
    called `rewards.py`); a dotted `path` is imported as a module and must be importable.
    The module sees `sys.argv == [path]`, as if it were run alone: the trainer's own command
    line is none of its business (argparse at module level would otherwise parse it).
    """
    sys.argv = [path]
    if is_python_file(path):
        file = Path(path).expanduser()
        module, where = _import_file(file, name), str(file)
    else:
        module, where = _import_module(path, name), f"module {path}"
    fn = getattr(module, name, None)
    if fn is None:
        defined = sorted(key for key, value in vars(module).items()
                         if inspect.isfunction(value) and value.__module__ == module.__name__)
        raise ConfigError(f"{where} has no function {name!r} (functions defined there: {', '.join(defined) or 'none'})")
    if not callable(fn):
        raise ConfigError(f"reward function {name!r} ({where}) is not callable: it is of type {type(fn).__name__}")
    return fn, where


def _import_file(path: Path, name: str) -> ModuleType:
    if not path.is_file():
        raise ConfigError(f"the file {str(path)!r} of reward function {name!r} does not exist "
                          "(a relative path is relative to the recipe file's directory, or in a command-line override "
                          "to the current directory)")
    stderr, exited = _HeldStderr.install(), False
    try:
        module = exec_user_file(path, "rlhf_user_reward")
    except BaseException as error:  # anything, SystemExit and KeyboardInterrupt included: only this process stops
        exited = isinstance(error, SystemExit)
        raise ConfigError(f"cannot import {path} (for reward function {name!r}): "
                          f"{_error_line(error, str(path))}{_exit_note(error, stderr)}") from None
    finally:
        stderr.release(pass_on=not exited)
    return module


def _import_module(dotted: str, name: str) -> ModuleType:
    stderr, exited = _HeldStderr.install(), False
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as error:
        if error.name and (dotted == error.name or dotted.startswith(error.name + ".")):
            raise ConfigError(f"module {dotted!r} of reward function {name!r} was not found; it must be importable "
                              "(installed, or its directory on PYTHONPATH), or give the path of a .py file") from None
        raise ConfigError(f"cannot import module {dotted} (for reward function {name!r}): {_error_line(error, None)}") from None
    except BaseException as error:  # as in _import_file
        exited = isinstance(error, SystemExit)
        raise ConfigError(f"cannot import module {dotted} (for reward function {name!r}): "
                          f"{_error_line(error, None)}{_exit_note(error, stderr)}") from None
    finally:
        stderr.release(pass_on=not exited)


def _error_line(error: BaseException, filename: str | None) -> str:
    """'line 3: ModuleNotFoundError: No module named 'x'': where in the user's module an import
    failed (the deepest frame in `filename`; without one, outside Python's import machinery)
    and why."""
    if isinstance(error, SyntaxError):
        where = "line" if error.filename == filename else f"{error.filename}, line"
        return f"{where} {error.lineno}: {type(error).__name__}: {error.msg}"
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if _is_user_frame(frame.filename, filename)]
    cause = type(error).__name__ + (f": {error}" if str(error) else "")
    if not frames:
        return cause
    return f"line {frames[-1].lineno}: {cause}" if filename else f"{frames[-1].filename}, line {frames[-1].lineno}: {cause}"


def _is_user_frame(frame_file: str, filename: str | None) -> bool:
    if filename:
        return frame_file == filename
    return not frame_file.startswith("<frozen") and frame_file != __file__


def _exit_note(error: BaseException, stderr: _HeldStderr) -> str:
    """For a module that exited while imported: what it printed last, and why it must not."""
    if not isinstance(error, SystemExit):
        return ""
    printed = stderr.last_line()
    said = f", after printing {printed!r}" if printed else ""
    return (f" (it exited while being imported{said}; the file is imported, not run: parse command-line "
            "arguments and call sys.exit only under `if __name__ == \"__main__\":`)")


class _HeldStderr:
    """Stands in for `sys.stderr` while a user's module is imported and holds what it writes:
    quoted in the error when the import exits (argparse's usage line), passed on otherwise.
    After the import it writes straight through (a logging handler made at import keeps it)."""

    _LIMIT = 1 << 16

    def __init__(self, target: TextIO):
        self.target, self.held, self.holding = target, [], True

    @classmethod
    def install(cls) -> _HeldStderr:
        held = cls(sys.stderr)
        sys.stderr = held
        return held

    def write(self, text: str) -> int:
        if not self.holding:
            return self.target.write(text)
        self.held.append(text)
        if sum(map(len, self.held)) > self._LIMIT:  # a chatty import: stop holding, pass it all on
            self._pass_on()
        return len(text)

    def flush(self) -> None:
        if not self.holding:
            self.target.flush()

    def last_line(self) -> str:
        lines = [line.strip() for line in "".join(self.held).splitlines() if line.strip()]
        return lines[-1][:300] if lines else ""

    def release(self, pass_on: bool) -> None:
        """End the import: pass on what was held, or drop it (an exit's error message quotes it)."""
        if sys.stderr is self:
            sys.stderr = self.target
        if self.holding and pass_on:
            self._pass_on()
        self.holding, self.held = False, []

    def _pass_on(self) -> None:
        self.holding = False
        self.target.write("".join(self.held))
        self.held = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)
