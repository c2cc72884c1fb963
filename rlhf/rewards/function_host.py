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
from dataclasses import dataclass
from typing import Any, Collection

from rlhf.rewards.function_load import BATCH_ARGS, NOT_EXTRA, SAMPLE_ARGS, CallPlan, load_function, plan_call
from rlhf.usercode.report import explain, kind, plain_scalar, short

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
            summary, details = explain(error, _ours)
            return Verdict(failure=f"{self.label} raised on sample {index} (response {short(main[1])}): {summary}", details=details)
        return self.check(index, result)

    def score_batch(self, main: tuple[list, list, list], extras: dict[str, list]) -> list[Verdict] | Verdict:
        """Call the batched function once; one Verdict per sample, or one for a call that failed as a whole."""
        size = len(main[0])
        try:
            results = self._invoke(main, extras)
            if hasattr(results, "tolist"):  # a numpy array or a tensor
                results = results.tolist()
        except BaseException as error:  # as in score_one
            summary, details = explain(error, _ours)
            return Verdict(failure=f"{self.label} raised on a batch of {size} samples: {summary}", details=details)
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
            summary, details = explain(error, _ours)
            return Verdict(failure=f"{self.label} returned {short(result)} for sample {index}, which could not be read "
                                   f"as a score: {summary}", details=details)

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
            return Verdict(failure=f"{self.label} returned {short(value)} ({kind(value)}) for sample {index}, too large "
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
    value = plain_scalar(value)
    return float(value) if isinstance(value, numbers.Real) else None


def _ours(filename: str) -> bool:
    """A frame of this module (the host calling the user's function)."""
    return filename == __file__
