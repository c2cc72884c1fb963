"""The reward-source protocol.

A source maps a :class:`~rlhf.data.batch.Batch` of B samples to one scalar per sample. It
reads the non-tensor fields `prompt_text`, `response_text`, `ground_truth` and
`data_source` (and any extra dataset fields the batch carries).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch

from rlhf.data.batch import Batch


@dataclass
class RewardOutput:
    """What a source returns: `scores [B]` (float32) and extra per-batch metrics to log."""

    scores: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


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
