"""Your own reward function, named in a recipe: `{type: function, path: my_rewards.py, name: score}`.

Two calling conventions, chosen by the source's `batched` key:

    per sample (default)  score(prompt, response, ground_truth, **extra) -> float | dict
    batched: true         score(prompts, responses, ground_truths, **extra) -> list[float | dict]

The first three arguments are passed by these names when the function has parameters so
named, else by position. `prompt` is the dataset's prompt text (before any chat template).
`extra` holds every other dataset field of the row (`data_source`, ...; lists of them when
batched) and the source's `kwargs` from the recipe (a kwarg wins over a field of the same
name); a function without `**extra` gets only the fields and kwargs it names. A dict result
needs a "score" key; its other numeric values are averaged over the samples that return them
and logged as `reward/<name>/<key>`.

Each call may take at most the source's `timeout_s` seconds of wall-clock time (default 60; a
batched call as a whole): a call still running then is stopped, or where it cannot be (off the
main thread: see :mod:`rlhf.deadline`) abandoned, and counts as a failure.

Mistakes visible before training (a missing file or function, an import error, a signature
that cannot take the call) are ConfigErrors when the source is built. Failures while scoring
(an exception, a call past `timeout_s`, NaN/inf, a non-number, a dict without "score", a
batched result of the wrong length) raise RewardFunctionError, which names the function, its
file and the sample (an exception: also the line of the user's code it came from; the full
trimmed traceback follows on the next lines), unless `reward.on_error: zero`: each failing
sample then scores 0.0 and is counted in the metric `errors` (NaN/inf also in `nonfinite`).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import math
import numbers
import re
import sys
import sysconfig
import traceback
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Collection

import torch

from rlhf import deadline
from rlhf.config.errors import ConfigError
from rlhf.config.validate import is_python_file
from rlhf.data.batch import Batch
from rlhf.deadline import CallTimedOut, call_with_timeout
from rlhf.rewards.base import RewardOutput

SAMPLE_ARGS = ("prompt", "response", "ground_truth")
"""Names of the three main arguments of a per-sample function."""
BATCH_ARGS = ("prompts", "responses", "ground_truths")
"""Names of the three main arguments of a batched function."""
NOT_EXTRA = frozenset({"prompt", "prompt_text", "response_text", "ground_truth", "group_index"})
"""Batch fields never passed as extra fields: the main arguments (and the rendered prompt)
and the loop's own bookkeeping."""
RESERVED_METRICS = frozenset({"mean", "errors", "nonfinite"})
"""Keys a dict result may not use: the combiner and this source log these names."""
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_FAILED = object()
"""Stands for the result of a sample whose call failed (scored 0.0 with on_error: zero)."""
_module_numbers = itertools.count()


class RewardFunctionError(RuntimeError):
    """A user reward function failed while scoring; the message names the function, its file,
    the sample and the cause (with the function's own traceback for an exception)."""


class FunctionSource:
    """A reward source that calls a user function (see the module docstring for the contract)."""

    def __init__(self, path: str, function: str, *, batched: bool = False, kwargs: dict[str, Any] | None = None,
                 on_error: str = "raise", extra_fields: Collection[str] | None = None, timeout_s: float = 60.0):
        """Import `function` from `path` (a .py file or a dotted module) and check that it can take
        the call. `extra_fields`: the dataset fields besides prompt and ground truth, when known
        (None, as in `rlhf validate`, skips the check that the fields it requires exist).
        `timeout_s`: the longest a call may take (see the module docstring)."""
        if on_error not in ("raise", "zero"):
            raise ValueError(f"on_error must be 'raise' or 'zero', got {on_error!r}")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.fn, self.where = load_function(path, function)
        if extra_fields is not None:
            extra_fields = set(extra_fields) - NOT_EXTRA
        self.batched, self.kwargs, self.on_error = batched, dict(kwargs or {}), on_error
        self.label = f"{'batched ' if batched else ''}reward function {function!r} ({self.where})"
        self.plan = plan_call(self.fn, BATCH_ARGS if batched else SAMPLE_ARGS, self.kwargs, extra_fields, self.label)

    def score(self, batch: Batch) -> RewardOutput:
        """`scores [B]` float32; metrics: the means of a dict result's extra keys, plus `errors`
        and `nonfinite` (sample counts) with on_error: zero."""
        prompts = batch["prompt"] if "prompt" in batch else batch["prompt_text"]
        main = (prompts, batch["response_text"], batch["ground_truth"])
        extras = {k: v for k, v in batch.non_tensors.items() if k not in NOT_EXTRA and self.plan.wants(k)}
        failures = _Failures(self.on_error == "raise")
        if self.batched:
            results = self._call_batched(main, extras, failures)
        else:
            results = [self._call_one(i, main, extras, failures) for i in range(len(batch))]
        metric_values: dict[str, list[float]] = defaultdict(list)
        scores = [0.0 if result is _FAILED else self._check(i, result, metric_values, failures) for i, result in enumerate(results)]
        metrics = {key: sum(values) / len(values) for key, values in metric_values.items()}
        if not failures.raising:
            metrics.update(errors=float(failures.errors), nonfinite=float(failures.nonfinite))
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), metrics)

    def _invoke(self, main: tuple, extras: dict[str, Any]) -> Any:
        names = BATCH_ARGS if self.batched else SAMPLE_ARGS
        keywords = {**extras, **self.kwargs}
        if self.plan.by_name:
            return call_with_timeout(lambda: self.fn(**dict(zip(names, main)), **keywords), self.timeout_s)
        return call_with_timeout(lambda: self.fn(*main, **keywords), self.timeout_s)

    def _timed_out(self, what: str) -> str:
        return (f"{self.label} did not return within its timeout_s of {self.timeout_s:g} s on {what}, and was abandoned "
                "(raise the source's timeout_s if it needs longer)")

    def _call_one(self, i: int, main: tuple, extras: dict[str, list], failures: "_Failures") -> Any:
        try:
            return self._invoke(tuple(column[i] for column in main), {k: v[i] for k, v in extras.items()})
        except CallTimedOut:
            failures.report(self._timed_out(f"sample {i} (response {_short(main[1][i])})"))
            return _FAILED
        except Exception as error:  # the user's code may raise anything; report it, with its traceback
            failures.report(f"{self.label} raised on sample {i} (response {_short(main[1][i])}): "
                            f"{type(error).__name__}: {error}{_user_line(error)}", _user_traceback(error))
            return _FAILED

    def _call_batched(self, main: tuple, extras: dict[str, list], failures: "_Failures") -> list:
        size = len(main[0])
        try:
            results = self._invoke(tuple(list(column) for column in main), {k: list(v) for k, v in extras.items()})
        except CallTimedOut:
            failures.report(self._timed_out(f"a batch of {size} samples"), count=size)
            return [_FAILED] * size
        except Exception as error:  # as in _call_one
            failures.report(f"{self.label} raised on a batch of {size} samples: {type(error).__name__}: {error}{_user_line(error)}",
                            _user_traceback(error), count=size)
            return [_FAILED] * size
        if hasattr(results, "tolist"):  # a numpy array or a tensor
            results = results.tolist()
        if not isinstance(results, (list, tuple)) or len(results) != size:
            got = f"{len(results)} results" if isinstance(results, (list, tuple)) else f"a {type(results).__name__}"
            failures.report(f"{self.label} returned {got} for {size} samples; it must return a list with one "
                            "score per sample", count=size)
            return [_FAILED] * size
        return list(results)

    def _check(self, i: int, result: Any, metric_values: dict[str, list[float]], failures: "_Failures") -> float:
        """The score of sample `i`'s result (0.0 for a bad one when on_error is zero); a dict's
        other numeric values go to `metric_values`."""
        value = result
        if isinstance(result, dict):
            if "score" not in result:
                failures.report(f"{self.label} returned a dict without a 'score' key for sample {i} (keys: {sorted(map(str, result))})")
                return 0.0
            reserved = sorted(RESERVED_METRICS & set(result))
            if reserved:
                failures.report(f"{self.label} returned the reserved key(s) {reserved} for sample {i}; "
                                f"{', '.join(sorted(RESERVED_METRICS))} are logged by the trainer, rename them")
                return 0.0
            value = result["score"]
        number = _as_number(value)
        if number is None:
            failures.report(f"{self.label} returned {_short(value)} ({type(value).__name__}) for sample {i}; a score "
                            "must be a number, or a dict with a numeric 'score'")
            return 0.0
        if not math.isfinite(number):
            failures.report(f"{self.label} returned {number} for sample {i}; a score must be finite", nonfinite=True)
            return 0.0
        if isinstance(result, dict):
            for key, item in result.items():
                extra = _as_number(item)
                if key != "score" and extra is not None and math.isfinite(extra):
                    metric_values[str(key)].append(extra)
        return number


class _Failures:
    """Reports a failed sample: raises RewardFunctionError, or (on_error: zero) counts it."""

    def __init__(self, raising: bool):
        self.raising, self.errors, self.nonfinite = raising, 0, 0

    def report(self, summary: str, details: str = "", count: int = 1, nonfinite: bool = False) -> None:
        if self.raising:
            hint = "; set reward.on_error: zero to score failing samples 0.0 and count them instead"
            raise RewardFunctionError(summary + hint + (f"\n{details}" if details else ""))
        self.errors += count
        self.nonfinite += count if nonfinite else 0


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
    """
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
    module_name = f"rlhf_user_reward_{next(_module_numbers)}_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    loader = importlib.machinery.SourceFileLoader(module_name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(module_name, path, loader=loader))
    sys.modules[module_name] = module  # dataclasses and pickle look a module up by its name
    try:
        loader.exec_module(module)
    except Exception as error:  # the user's module may raise anything at import
        del sys.modules[module_name]
        raise ConfigError(f"cannot import {path} (for reward function {name!r}): {_error_line(error, str(path))}") from None
    return module


def _import_module(dotted: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError as error:
        if error.name and (dotted == error.name or dotted.startswith(error.name + ".")):
            raise ConfigError(f"module {dotted!r} of reward function {name!r} was not found; it must be importable "
                              "(installed, or its directory on PYTHONPATH), or give the path of a .py file") from None
        raise ConfigError(f"cannot import module {dotted} (for reward function {name!r}): {_error_line(error, None)}") from None
    except Exception as error:  # as in _import_file
        raise ConfigError(f"cannot import module {dotted} (for reward function {name!r}): {_error_line(error, None)}") from None


def _error_line(error: Exception, filename: str | None) -> str:
    """'line 3: ModuleNotFoundError: No module named 'x'': where in the user's module an import
    failed (the deepest frame in `filename`; without one, outside Python's import machinery)
    and why."""
    if isinstance(error, SyntaxError):
        where = "line" if error.filename == filename else f"{error.filename}, line"
        return f"{where} {error.lineno}: {type(error).__name__}: {error.msg}"
    frames = [frame for frame in traceback.extract_tb(error.__traceback__) if _is_user_frame(frame.filename, filename)]
    cause = f"{type(error).__name__}: {error}"
    if not frames:
        return cause
    return f"line {frames[-1].lineno}: {cause}" if filename else f"{frames[-1].filename}, line {frames[-1].lineno}: {cause}"


def _is_user_frame(frame_file: str, filename: str | None) -> bool:
    if filename:
        return frame_file == filename
    return not frame_file.startswith("<frozen") and frame_file != __file__


def _user_frames(error: Exception) -> tuple[list[traceback.FrameSummary], int]:
    """(the frames of an exception raised in a user function, without this module's and the
    timeout's frames above them; the index of the last one outside libraries: the standard
    library, installed packages)."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename in (__file__, deadline.__file__):
        frames.pop(0)
    library = tuple({sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")})
    last_user = max((i for i, frame in enumerate(frames) if not frame.filename.startswith(library)), default=len(frames) - 1)
    return frames, last_user


def _user_line(error: Exception) -> str:
    """' (at line 7 of /x/my_rewards.py, in helper)': the user's line the exception came from."""
    frames, last_user = _user_frames(error)
    if not frames:
        return ""
    frame = frames[last_user]
    return f" (at line {frame.lineno} of {frame.filename}, in {frame.name})"


def _user_traceback(error: Exception) -> str:
    """The traceback of an exception raised in a user function, trimmed to the user's frames
    (see :func:`_user_frames`), library frames below the user's last line left out."""
    frames, last_user = _user_frames(error)
    omitted = len(frames) - 1 - last_user
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[: last_user + 1])]
    if omitted:
        lines.append(f"  ... {omitted} frame(s) inside libraries\n")
    lines.extend(traceback.format_exception_only(type(error), error))
    return "".join(lines).rstrip()


def _as_number(value: Any) -> float | None:
    """`value` as a float when it is a real number (bools, numpy scalars, 0-d tensors too), else None."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    return float(value) if isinstance(value, numbers.Real) else None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
