"""Verification of the weight sync: after a sync, the rollout engine and the trainer must
assign the same log-probabilities to the same tokens.

Every `sync.check_every` syncs the rollout engine answers a fixed probe batch greedily and the
actor rescores those tokens; a gap above `sync.tolerance` stops the run with a
:class:`WeightSyncError`. With the in-process HF engine sharing the actor's module this can only
catch numerical mismatches; it exists for engines that receive copies of the weights.
"""

from __future__ import annotations

import dataclasses

from rlhf.algorithms.agreement import logprob_gap
from rlhf.config.training_schema import SyncConfig
from rlhf.controller.setup import Run, sampling_params
from rlhf.data.batch import Batch
from rlhf.rollout.base import RolloutEngine, SamplingParams

DEFAULT_TOLERANCE = {"float32": 1e-3, "bfloat16": 0.5}
"""`sync.tolerance` when it is null, by `model.dtype` (bfloat16 rounding alone moves logprobs)."""


class WeightSyncError(RuntimeError):
    """The rollout engine and the trainer disagree about the policy after a weight sync."""


def check_weight_sync(rollout: RolloutEngine, actor, probe_prompts: Batch, sampling: SamplingParams, tolerance: float) -> float:
    """Greedy responses of `rollout` to `probe_prompts`, rescored by `actor` (the actor role:
    an ActorWorker or its worker-group proxy).

    Greedy decoding makes the probe deterministic; its logprobs are taken at the sampling
    temperature, which the actor scores at too, so both sides compute the same quantity.
    `sampling` gives `max_new_tokens` and the temperature.

    Returns:
        The largest |rollout − trainer| logprob over the probe's response tokens.
    Raises:
        WeightSyncError: naming both engines, the max and mean gap, when max > `tolerance`.
    """
    greedy = dataclasses.replace(sampling, greedy=True, logprobs=True)
    probe = rollout.generate(probe_prompts, greedy)
    trainer_logprobs = actor.compute_logprobs(probe)
    mean_gap, max_gap = logprob_gap(probe["rollout_logprobs"], trainer_logprobs, probe["response_mask"])
    if max_gap.item() > tolerance:
        raise WeightSyncError(
            f"weight sync check failed: rollout engine {type(getattr(rollout, 'engine', rollout)).__name__} vs trainer "
            f"{getattr(actor, 'description', type(actor).__name__)} disagree on the probe batch's token logprobs by "
            f"max {max_gap.item():.4g}, mean {mean_gap.item():.4g} (sync.tolerance {tolerance:g}); "
            "the rollout engine is not sampling from the policy being trained"
        )
    return max_gap.item()


class SyncChecker:
    """Counts weight syncs and runs :func:`check_weight_sync` on every `check_every`-th one."""

    def __init__(self, config: SyncConfig, tolerance: float, probe_prompts: Batch, sampling: SamplingParams):
        self.check_every = config.check_every
        self.tolerance = tolerance
        self.probe_prompts = probe_prompts
        self.sampling = sampling
        self.syncs = 0

    @classmethod
    def from_run(cls, run: Run) -> SyncChecker:
        sync = run.config.sync
        tolerance = sync.tolerance if sync.tolerance is not None else DEFAULT_TOLERANCE[run.config.model.dtype]
        return cls(sync, tolerance, probe_batch(run, sync.probe_size), sampling_params(run.config))

    def state_dict(self) -> dict:
        """How many syncs were counted (the check runs on every `check_every`-th)."""
        return {"syncs": self.syncs}

    def load_state_dict(self, state: dict) -> None:
        self.syncs = int(state["syncs"])

    def after_sync(self, rollout: RolloutEngine, actor) -> dict[str, float]:
        """Call once after each weight sync; returns `sync/probe_logprob_diff_max` when it checked."""
        self.syncs += 1
        if not self.check_every or self.syncs % self.check_every:
            return {}
        max_gap = check_weight_sync(rollout, actor, self.probe_prompts, self.sampling, self.tolerance)
        return {"sync/probe_logprob_diff_max": max_gap}


def probe_batch(run: Run, size: int) -> Batch:
    """The first `size` eval prompts, or the first `size` training rows when there are none:
    the same batch at every check."""
    if run.eval_prompts:
        prompts = Batch.concat(run.eval_prompts)
        return prompts.select(range(min(size, len(prompts))))
    return run.prompts(run.train_rows[:size])
