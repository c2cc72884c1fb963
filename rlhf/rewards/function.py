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

The function runs in a worker process of its own (:class:`rlhf.usercode.process.UserCodeProcess`
hosting :class:`rlhf.rewards.function_host.FunctionHost`), which imports its file with a
neutral `sys.argv` and keeps it loaded across calls (module-level state lives there, not in
the trainer). Each call may take at most the source's `timeout_s` seconds of wall-clock time
(default 60; a batched call as a whole): a call still running then is stopped by killing the
worker, whatever the code does (its own `signal.alarm`, a bare `except:`, a C loop), counts as
a failure, and a fresh worker (the module imported anew) takes the next call.

Mistakes visible before training (a missing file or function, an import error, a module that
exits or parses the command line at import, a signature that cannot take the call) are
ConfigErrors when the source is built. Failures while scoring (an exception, `sys.exit` or
another BaseException, a call past `timeout_s`, a crashed worker, NaN/inf or a number too
large for a float, a non-number, a dict without "score", a batched result of the wrong length)
raise RewardFunctionError, which names the function, its file and the sample (an exception:
also the line of the user's code it came from; the full trimmed traceback follows on the next
lines), unless `reward.on_error: zero`: each failing sample then scores 0.0 and is counted in
the metric `errors` (NaN/inf/overflow also in `nonfinite`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Collection, Iterator

import torch

from rlhf.config.errors import ConfigError
from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput
from rlhf.rewards.function_host import FunctionHost, Verdict
from rlhf.rewards.function_load import NOT_EXTRA
from rlhf.usercode.errors import DeadlineExceeded, ProcessDied, UserCodeError
from rlhf.usercode.process import UserCodeProcess
from rlhf.usercode.report import short

IMPORT_TIMEOUT_S = 120.0
"""How long the worker may take to import the function's module (and what that imports)."""


class RewardFunctionError(RuntimeError):
    """A user reward function failed while scoring; the message names the function, its file,
    the sample and the cause (with the function's own traceback for an exception)."""


class FunctionSource:
    """A reward source that calls a user function (see the module docstring for the contract)."""

    def __init__(self, path: str, function: str, *, batched: bool = False, kwargs: dict[str, Any] | None = None,
                 on_error: str = "raise", extra_fields: Collection[str] | None = None, timeout_s: float = 60.0):
        """Start the worker, which imports `function` from `path` (a .py file or a dotted module)
        and checks that it can take the call. `extra_fields`: the dataset fields besides
        prompt and ground truth, when known (None, as in `rlhf validate`, skips the check that
        the fields it requires exist). `timeout_s`: the longest a call may take (see the
        module docstring). Call `close()` to stop the worker (also done at interpreter exit)."""
        if on_error not in ("raise", "zero"):
            raise ValueError(f"on_error must be 'raise' or 'zero', got {on_error!r}")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        self.timeout_s = float(timeout_s)
        self.batched, self.on_error = batched, on_error
        self.label = f"{'batched ' if batched else ''}reward function {function!r} ({path})"
        self.process = UserCodeProcess(FunctionHost, (path, function, batched, dict(kwargs or {}), extra_fields),
                                       name=self.label, startup_timeout_s=IMPORT_TIMEOUT_S)
        try:
            self.process.start()
            self.label, self.plan = self.process.call("describe", timeout_s=IMPORT_TIMEOUT_S)
        except DeadlineExceeded:
            self.process.close()
            raise ConfigError(f"importing {path} (for reward function {function!r}) did not finish within "
                              f"{IMPORT_TIMEOUT_S:g} s; its worker process was killed") from None
        except UserCodeError as error:  # it crashed the worker (a C extension), or a bug of ours
            self.process.close()
            raise ConfigError(f"cannot import {path} (for reward function {function!r}): {error}") from None
        except BaseException:  # a ConfigError naming the problem, or Ctrl-C
            self.process.close()
            raise

    def score(self, batch: Batch) -> RewardOutput:
        """`scores [B]` float32; metrics: the means of a dict result's extra keys, plus `errors`
        and `nonfinite` (sample counts) with on_error: zero."""
        prompts = batch["prompt"] if "prompt" in batch else batch["prompt_text"]
        main = (list(prompts), list(batch["response_text"]), list(batch["ground_truth"]))
        extras = {k: list(v) for k, v in batch.non_tensors.items() if k not in NOT_EXTRA and self.plan.wants(k)}
        failures = _Failures(self.on_error == "raise")
        # per sample: lazily, so that with on_error raise the first failure stops the scoring
        verdicts = self._score_batch(main, extras, failures) if self.batched else self._score_each(main, extras)
        metric_values: dict[str, list[float]] = defaultdict(list)
        scores = []
        try:
            for verdict in verdicts:
                if verdict.failure is not None:
                    failures.report(verdict.failure, verdict.details, nonfinite=verdict.nonfinite)
                for key, value in (verdict.metrics or {}).items():
                    metric_values[key].append(value)
                scores.append(verdict.score if verdict.failure is None else 0.0)
        finally:
            if not isinstance(verdicts, list):
                verdicts.close()  # stops a worker still scoring the samples after a failure
        metrics = {key: sum(values) / len(values) for key, values in metric_values.items()}
        if not failures.raising:
            metrics.update(errors=float(failures.errors), nonfinite=float(failures.nonfinite))
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), metrics)

    def _score_each(self, main: tuple[list, list, list], extras: dict[str, list]) -> Iterator[Verdict]:
        """One Verdict per sample, in order; the worker runs the calls back to back. A call
        past the deadline (or one that crashes the worker) fails its sample, and a fresh
        worker goes on from the next."""
        calls = [(i, (main[0][i], main[1][i], main[2][i]), {k: v[i] for k, v in extras.items()}) for i in range(len(main[0]))]
        done = 0
        while done < len(calls):
            restart_failed = self._restart()
            if restart_failed:
                for i in range(done, len(calls)):
                    yield Verdict(failure=f"{self.label} could not be restarted for sample {i}: {restart_failed}")
                return
            stream = self.process.call_each("score_one", calls[done:], timeout_s=self.timeout_s)
            try:
                for verdict in stream:
                    done += 1
                    yield verdict
            except UserCodeError as error:
                yield self._failed(error, f"sample {done} (response {short(main[1][done])})")
                done += 1
            finally:
                stream.close()

    def _score_batch(self, main: tuple[list, list, list], extras: dict[str, list], failures: _Failures) -> list[Verdict]:
        size, what = len(main[0]), f"a batch of {len(main[0])} samples"
        restart_failed = self._restart()
        if restart_failed:
            verdicts = Verdict(failure=f"{self.label} could not be restarted for {what}: {restart_failed}")
        else:
            try:
                verdicts = self.process.call("score_batch", main, extras, timeout_s=self.timeout_s)
            except UserCodeError as error:
                verdicts = self._failed(error, what)
        if isinstance(verdicts, Verdict):  # the call failed as a whole: every sample scores 0.0
            failures.report(verdicts.failure, verdicts.details, count=size)
            return [Verdict()] * size
        return verdicts

    def _restart(self) -> str | None:
        """Start the worker again if a timeout or crash killed it; None when it runs, else why it cannot."""
        try:
            self.process.start()
        except (ConfigError, UserCodeError) as error:  # the file changed since, or the worker cannot start
            return str(error)
        return None

    def _failed(self, error: UserCodeError, what: str) -> Verdict:
        """A failed call: past its deadline, the worker dead, or a result that could not be sent back."""
        if isinstance(error, DeadlineExceeded):
            return Verdict(failure=f"{self.label} did not return within its timeout_s of {self.timeout_s:g} s on {what}, "
                                   "and was stopped (its worker process killed; raise the source's timeout_s if it needs longer)")
        if isinstance(error, ProcessDied):
            return Verdict(failure=f"{self.label} crashed on {what}: {error}")
        return Verdict(failure=f"{self.label} failed on {what}: {error}", details=getattr(error, "details", ""))

    def close(self) -> None:
        """Stop the worker process."""
        self.process.close()


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
