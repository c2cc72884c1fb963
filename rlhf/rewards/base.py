"""The reward-source protocol.

A source maps a :class:`~rlhf.data.batch.Batch` of B samples to one scalar per sample. It
reads the non-tensor fields `prompt` (the dataset's prompt), `prompt_text` (as rendered for
the policy), `response_text`, `ground_truth` and `data_source` (and any extra dataset fields
the batch carries), and may read the tensors `response_ids [B, R]` / `response_mask [B, R]`
with `batch.meta["tokenizer"]` (the policy's tokenizer, set by the rollout engine) to map
characters of a response to its tokens (:mod:`rlhf.rewards.offsets`).

A *process* source (a PRM) also returns, per sample, the scores of its K_b reasoning steps
and the response token where each step ends; the combiner turns them into token rewards at
the step ends (:mod:`rlhf.rewards.combine`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from rlhf.data.batch import Batch

CORRECT_AT = 1.0 - 1e-6
"""A score at or above this is a verifier's "correct" (its 1, within float rounding): a correct
greedy answer in evaluation, a successful episode whose final answer the sources graded."""


@dataclass
class RewardOutput:
    """What a source returns: `scores [B]` (float32), extra per-batch metrics to log (as
    `reward/<source>/<name>`), and for a process source the per-step fields."""

    scores: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    step_scores: list[torch.Tensor] | None = None
    """Process sources: B float tensors [K_b], the raw score of each step (a PRM probability)."""
    step_ends: list[torch.Tensor] | None = None
    """Process sources: B long tensors [K_b], the response-token index (in [0, R)) where each
    step ends."""

    @property
    def is_process(self) -> bool:
        return self.step_scores is not None


class RewardSource(Protocol):
    """Anything with `score(batch) -> RewardOutput`."""

    def score(self, batch: Batch) -> RewardOutput: ...


class PerSampleRuleSource:
    """A source from a pure rule `fn(response, ground_truth) -> float`, applied sample by sample."""

    def __init__(self, fn: Callable[[str, str], float]):
        self.fn = fn

    def score(self, batch: Batch) -> RewardOutput:
        values = [float(self.fn(r, g)) for r, g in zip(batch["response_text"], batch["ground_truth"])]
        return RewardOutput(torch.tensor(values, dtype=torch.float32))
