"""Length-based reward sources."""

from __future__ import annotations

import torch

from rlhf.algorithms.shaping import overlong_penalty
from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput


class OverlongPenaltySource:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) as a reward source: 0 up to
    `max_length − buffer_length` response tokens, then linearly down to −`penalty` at
    `max_length`. Set `max_length` to rollout.max_new_tokens so truncated responses get the
    full penalty. Logs the share of responses inside the penalty zone."""

    def __init__(self, max_length: int, buffer_length: int, penalty: float = 1.0):
        if not 1 <= buffer_length <= max_length:
            raise ValueError(f"overlong: need 1 <= buffer_length <= max_length, got buffer_length={buffer_length}, max_length={max_length}")
        self.max_length, self.buffer_length, self.penalty = max_length, buffer_length, penalty

    def score(self, batch: Batch) -> RewardOutput:
        lengths = batch["response_mask"].sum(dim=-1)
        scores = overlong_penalty(lengths, self.max_length, self.buffer_length, self.penalty)
        in_zone = (lengths > self.max_length - self.buffer_length).float().mean().item()
        return RewardOutput(scores.to(torch.float32), {"penalised_fraction": in_zone})
