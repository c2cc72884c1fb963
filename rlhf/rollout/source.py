"""Where the RL loop's samples come from: the `RolloutSource` seam.

Steps (1)-(3) of every RL iteration (take prompts, generate, score) are one call,
`source.next_batch(roles, timer)`, which returns the scored :class:`Sampled` batch the rest of
the step trains on. Today's source is synchronous and single-turn
(:class:`rlhf.rollout.sync_source.SyncRolloutSource`); a multi-turn source (episodes against
environments) and an asynchronous one (rollout workers streaming into a buffer beside training)
plug in here without touching the loop: every source yields the same Batch, and a source's
position in its stream is part of the checkpoint (`state_dict`). At the end of each step the
loop calls `after_step` (a source with engines of its own pushes the new weights there).

Batch fields a source sets (B sequences, P prompt tokens, R response tokens): `prompt_ids
[B, P]`, `prompt_mask [B, P]`, `response_ids [B, R]`, `response_mask [B, R]`, `scores [B]`,
`group_index` (B labels: the prompt of each sample), the rows' own fields, each reward
source's scores under :data:`SOURCE_SCORES` + name, and with process rewards
`outcome_scores [B]` and `process_token_rewards [B, R]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from rlhf.data.batch import Batch

SOURCE_SCORES = "source_scores/"
"""Prefix of the [B] tensors holding each reward source's own (unweighted) scores in a batch."""


@dataclass
class Sampled:
    """The batch to train on, every score generated this step (before any filtering, for
    logging), and the sampling metrics."""

    batch: Batch
    all_scores: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


class RolloutSource(Protocol):
    """Yields scored batches to train on, and can save and restore its position."""

    last: Sampled | None
    """The latest batch it yielded (the loop takes sample generations from it)."""

    def next_batch(self, roles: Any, timer: Any) -> Sampled:
        """The next scored batch, generated with `roles.rollout` and scored with
        `roles.reward`; time spent goes into `timer.phase(name)` blocks."""
        ...

    def after_step(self, roles: Any, updated: bool) -> int:
        """A step ended (`updated`: with a policy update): a source with engines of its own
        sends them the weights (returns the bytes moved; 0 for sources that generate with
        `roles.rollout`, which the loop syncs)."""
        ...

    def close(self) -> None:
        """Stop what the source started (an asynchronous source's rollout process)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def score(reward: Any, batch: Batch) -> dict[str, float]:
    """Score `batch` with the run's reward, setting `scores`, each source's own scores under
    :data:`SOURCE_SCORES` and, with process rewards, `outcome_scores` and
    `process_token_rewards`; returns the reward metrics."""
    result = reward.evaluate(batch)
    batch.set("scores", result.scores)
    for name, scores in result.per_source.items():  # for samples.jsonl
        batch.set(SOURCE_SCORES + name, scores)
    if result.process_token_rewards is not None:
        # token-level estimators read these two instead of `scores` (see add_advantages)
        batch.set("outcome_scores", result.outcome_scores).set("process_token_rewards", result.process_token_rewards)
    return dict(result.metrics)


class PromptGroups:
    """The prompt rows of each step, each with a fresh group id (its samples or episodes share
    it), drawn from a seeded stream; its position is part of the source's state."""

    def __init__(self, stream):
        self.stream = stream
        self.next_group = 0

    @property
    def batch_size(self) -> int:
        return self.stream.batch_size

    def next(self) -> tuple[list[dict], list[int]]:
        """(the next batch of rows, their group ids)."""
        rows = next(self.stream)
        groups = list(range(self.next_group, self.next_group + len(rows)))
        self.next_group += len(rows)
        return rows, groups

    def state_dict(self) -> dict[str, Any]:
        """The stream's position and the next group id."""
        return {"stream": self.stream.state_dict(), "next_group": self.next_group}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.next_group = int(state["next_group"])

