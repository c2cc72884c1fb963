"""The recipe section of asynchronous RL (`rollout.mode: async`): how far the rollout side may
run ahead of the trainer, what happens to samples that got too old, and how weights flow back.
See :mod:`rlhf.rollout.async_source` for the dataflow."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AsyncTrainingConfig:
    """Decoupled rollout and training (read only with `rollout.mode: async`)."""

    max_staleness: int = 1
    """eta: a sample generated with policy version v trains the update that produces version
    v + eta + 1 at the latest (0: every sample is on-policy, and nothing can overlap)."""
    stale: str = "drop"
    """'drop': the rollout side never starts a group that would be older than max_staleness
    when trained, and any that is anyway is dropped and counted (async/dropped); 'correct':
    the rollout side runs ahead as far as buffer_size allows and older samples are kept and
    trained with actor.off_policy.correction (which must not be 'none')."""
    buffer_size: int = 0
    """Groups (prompts with their rollout.n samples) generated or in flight but not yet
    trained on; 0: (max_staleness + 1) * data.train_batch_size. At least one batch."""
    sync_every: int = 1
    """Push the trainer's weights to the rollout side after every N updates."""
    partial: bool = False
    """Partial rollouts: a generation in flight when new weights arrive pauses, takes them and
    continues (its prefix is re-read with the new weights); every token records the version
    that sampled it. Off: in-flight generations finish with the weights they started with."""
    generate_groups: int = 0
    """Groups one generate call of the rollout side takes at most (0: data.train_batch_size)."""
    rollout_threads: int = 1
    """torch threads of the rollout process (the trainer keeps trainer.num_threads)."""
    rollout_cpus: list[int] = field(default_factory=list)
    """CPU ids the rollout process runs on; the trainer then keeps the other CPUs it may use
    (empty: both share every CPU)."""
    timeout_s: float = 600.0
    """Longest the trainer waits for the rollout side to deliver a group before the run stops
    with an error naming the rollout process."""
