"""A rollout engine whose every `generate` call has a wall-clock limit (`rollout.timeout_s`).

A generation that never returns (a wedged vLLM engine core, a dead Ray worker group, a
sampling loop that cannot reach EOS because of a bug) would stall the run forever without a
word. The controller wraps its rollout engine once; a call past the limit raises
:class:`GenerationTimeout`, naming the batch, the engine and the key, and the run stops with
exit 1 (its checkpoints untouched). `generate_steps` (step-wise generation for search) has the
same limit; every other method passes straight to the engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rlhf.data.batch import Batch
from rlhf.deadline import CallTimedOut, call_with_timeout
from rlhf.rollout.base import RolloutEngine, SamplingParams, StepPrompt


class GenerationTimeout(RuntimeError):
    """One `generate` call ran past `rollout.timeout_s`."""


class TimedRollout:
    """`engine` with `generate` limited to `timeout_s` seconds per call."""

    def __init__(self, engine: RolloutEngine, timeout_s: float):
        self.engine, self.timeout_s = engine, timeout_s

    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        return self._limited(lambda: self.engine.generate(prompts, sampling), f"{len(prompts)} responses", sampling)

    def generate_steps(self, prompts: Sequence[StepPrompt], k: int, sampling: SamplingParams, delimiter: str | None = None) -> list:
        return self._limited(lambda: self.engine.generate_steps(prompts, k, sampling, delimiter), f"{k} next steps of {len(prompts)} prefixes", sampling)

    def _limited(self, call, what: str, sampling: SamplingParams):
        try:
            return call_with_timeout(call, self.timeout_s)
        except CallTimedOut:
            raise GenerationTimeout(
                f"generating {what} (up to {sampling.max_new_tokens} tokens each) with "
                f"{type(self.engine).__name__} took longer than rollout.timeout_s={self.timeout_s:g} s: the engine hangs, "
                "or the batch needs more time (raise rollout.timeout_s, or lower data.train_batch_size / rollout.n)"
            ) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)  # sleep, wake, update_weights, model, set_seed, ...
