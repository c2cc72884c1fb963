"""The worker-process side of a function reward source: imports the user's function, calls it
and turns each result into a :class:`Verdict` (a score, or why the sample failed).

Everything that touches the user's objects happens here, in the worker: their results are
read (a numpy scalar, a tensor, a dict, an int too large for a float, an object whose
`__float__` raises) before anything travels back, so the driver only ever receives plain
numbers and messages. Every exception of the user's code is caught, BaseExceptions included
(`sys.exit`, `KeyboardInterrupt` raised by the code itself, `asyncio.CancelledError`), and
becomes a failure naming the function, its file, the sample and the user's line.
Imports only what the worker needs (no torch), so that it starts quickly.
"""

from __future__ import annotations

import math
import numbers
import sysconfig
import traceback
from dataclasses import dataclass
from typing import Any, Collection

from rlhf.rewards.function_load import BATCH_ARGS, NOT_EXTRA, SAMPLE_ARGS, CallPlan, load_function, plan_call

RESERVED_METRICS = frozenset({"mean", "errors", "nonfinite"})
"""Keys a dict result may not use: the combiner and the source log these names."""


@dataclass
class Verdict:
    """What became of one sample (or of a whole batched call, when it failed as a whole)."""

    score: float = 0.0
    metrics: dict[str, float] | None = None
    """A dict result's other finite numbers, by key."""
    failure: str | None = None
    """Why the sample failed (one line naming the function, its file and the sample); None if it did not."""
    details: str = ""
    """The user's traceback, for a failure that was an exception."""
    nonfinite: bool = False
    """The failure is a NaN, an infinity or a number too large for a float."""


class FunctionHost:
    """Built in the worker by `UserCodeProcess(FunctionHost, ...)`: the function `function` of
    `path`, checked against the call (ConfigError otherwise; see :func:`plan_call`)."""

    def __init__(self, path: str, function: str, batched: bool, kwargs: dict[str, Any], extra_fields: Collection[str] | None):
        self.fn, where = load_function(path, function)
        self.batched, self.kwargs = batched, dict(kwargs)
        self.names = BATCH_ARGS if batched else SAMPLE_ARGS
        self.label = f"{'batched ' if batched else ''}reward function {function!r} ({where})"
        if extra_fields is not None:
            extra_fields = set(extra_fields) - NOT_EXTRA
        self.plan = plan_call(self.fn, self.names, self.kwargs, extra_fields, self.label)

    def describe(self) -> tuple[str, CallPlan]:
        """(the label messages use, the call plan: which extra fields the function takes)."""
        return self.label, self.plan

    def score_one(self, index: int, main: tuple, extras: dict[str, Any]) -> Verdict:
        """Call the per-sample function on sample `index` (`main`: its prompt, response, ground truth)."""
        try:
            result = self._invoke(main, extras)
        except BaseException as error:  # the user's code may raise anything: report it with its traceback
            return Verdict(failure=f"{self.label} raised on sample {index} (response {short(main[1])}): "
                                   f"{_cause(error)}{_user_line(error)}", details=_user_traceback(error))
        return self.check(index, result)

    def score_batch(self, main: tuple[list, list, list], extras: dict[str, list]) -> list[Verdict] | Verdict:
        """Call the batched function once; one Verdict per sample, or one for a call that failed as a whole."""
        size = len(main[0])
        try:
            results = self._invoke(main, extras)
            if hasattr(results, "tolist"):  # a numpy array or a tensor
                results = results.tolist()
        except BaseException as error:  # as in score_one
            return Verdict(failure=f"{self.label} raised on a batch of {size} samples: {_cause(error)}{_user_line(error)}",
                           details=_user_traceback(error))
        if not isinstance(results, (list, tuple)) or len(results) != size:
            got = f"{len(results)} results" if isinstance(results, (list, tuple)) else f"a {type(results).__name__}"
            return Verdict(failure=f"{self.label} returned {got} for {size} samples; it must return a list with one score per sample")
        return [self.check(i, result) for i, result in enumerate(results)]

    def _invoke(self, main: tuple, extras: dict[str, Any]) -> Any:
        keywords = {**extras, **self.kwargs}
        if self.plan.by_name:
            return self.fn(**dict(zip(self.names, main)), **keywords)
        return self.fn(*main, **keywords)

    def check(self, index: int, result: Any) -> Verdict:
        """The Verdict on sample `index`'s result: its score, or why it is not one."""
        try:
            return self._check(index, result)
        except BaseException as error:  # reading a user object ran user code (`__float__`, `item`, `__eq__`)
            return Verdict(failure=f"{self.label} returned {short(result)} for sample {index}, which could not be read "
                                   f"as a score: {_cause(error)}{_user_line(error)}", details=_user_traceback(error))

    def _check(self, index: int, result: Any) -> Verdict:
        value = result
        if isinstance(result, dict):
            if "score" not in result:
                return Verdict(failure=f"{self.label} returned a dict without a 'score' key for sample {index} (keys: {sorted(map(str, result))})")
            reserved = sorted(RESERVED_METRICS & set(result))
            if reserved:
                return Verdict(failure=f"{self.label} returned the reserved key(s) {reserved} for sample {index}; "
                                       f"{', '.join(sorted(RESERVED_METRICS))} are logged by the trainer, rename them")
            value = result["score"]
        try:
            number = _as_number(value)
        except OverflowError:
            return Verdict(failure=f"{self.label} returned {short(value)} ({_kind(value)}) for sample {index}, too large "
                                   "for a float; a score must be finite", nonfinite=True)
        if number is None:
            return Verdict(failure=f"{self.label} returned {short(value)} ({type(value).__name__}) for sample {index}; "
                                   "a score must be a number, or a dict with a numeric 'score'")
        if not math.isfinite(number):
            return Verdict(failure=f"{self.label} returned {number} for sample {index}; a score must be finite", nonfinite=True)
        return Verdict(number, _metrics(result) if isinstance(result, dict) else None)


def _metrics(result: dict) -> dict[str, float]:
    """A dict result's other finite numbers (the rest is ignored)."""
    metrics = {}
    for key, item in result.items():
        try:
            extra = _as_number(item)
        except OverflowError:
            continue
        if key != "score" and extra is not None and math.isfinite(extra):
            metrics[str(key)] = extra
    return metrics


def _as_number(value: Any) -> float | None:
    """`value` as a float when it is a real number (bools, numpy scalars, 0-d tensors too), else
    None; OverflowError for one too large for a float (`10**400`)."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        value = value.item()
    return float(value) if isinstance(value, numbers.Real) else None


def _kind(value: Any) -> str:
    """'int of 401 digits' for an int, else the type's name."""
    if isinstance(value, int):
        return f"int of {len(str(abs(value)))} digits" if value.bit_length() < 10_000 else f"int of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return type(value).__name__


def short(value: Any, limit: int = 60) -> str:
    """`repr(value)`, cut to `limit` characters (and never failing)."""
    try:
        text = repr(value)
    except Exception:  # a huge int (Python refuses to print > 4300 digits) or a broken __repr__
        text = f"<{_kind(value)}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cause(error: BaseException) -> str:
    """'ValueError: cannot parse', or just 'CancelledError' for an exception without a message."""
    try:
        text = str(error)
    except Exception:  # a user exception whose __str__ fails
        text = "<its message cannot be shown>"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _user_frames(error: BaseException) -> tuple[list[traceback.FrameSummary], int]:
    """(the frames of an exception raised in a user function, without this module's frames
    above them; the index of the last one outside libraries: the standard library, installed
    packages)."""
    frames = traceback.extract_tb(error.__traceback__)
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    library = tuple({sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")})
    last_user = max((i for i, frame in enumerate(frames) if not frame.filename.startswith(library)), default=len(frames) - 1)
    return frames, last_user


def _user_line(error: BaseException) -> str:
    """' (at line 7 of /x/my_rewards.py, in helper)': the user's line the exception came from."""
    frames, last_user = _user_frames(error)
    if not frames:
        return ""
    frame = frames[last_user]
    return f" (at line {frame.lineno} of {frame.filename}, in {frame.name})"


def _user_traceback(error: BaseException) -> str:
    """The traceback of an exception raised in a user function, trimmed to the user's frames
    (see :func:`_user_frames`), library frames below the user's last line left out."""
    frames, last_user = _user_frames(error)
    omitted = len(frames) - 1 - last_user
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[: last_user + 1])]
    if omitted:
        lines.append(f"  ... {omitted} frame(s) inside libraries\n")
    lines.extend(traceback.format_exception_only(type(error), error))
    return "".join(lines).rstrip()
