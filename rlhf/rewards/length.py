"""Length-based reward sources: `overlong` (DAPO's soft ramp to a fixed penalty) and `length`
(a plain linear penalty past a target length)."""

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


class LengthPenaltySource:
    """A linear penalty on long responses: `-coef * max(0, length - target)`, with `length`
    the response's tokens (EOS included, as counted by `response_mask`). 0 up to `target`
    tokens, then `coef` less per extra token, without a floor (unlike `overlong`). Logs the
    share of responses longer than `target`."""

    def __init__(self, target: int, coef: float = 0.01):
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            raise ValueError(f"length: kwargs.target must be an integer >= 0 (tokens), got {target!r}")
        if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not 0 <= coef < float("inf"):
            raise ValueError(f"length: kwargs.coef must be a finite number >= 0, got {coef!r}")
        self.target, self.coef = target, float(coef)

    def score(self, batch: Batch) -> RewardOutput:
        lengths = batch["response_mask"].sum(dim=-1).to(torch.float32)
        excess = (lengths - self.target).clamp(min=0.0)
        over = (excess > 0).float().mean().item() if len(lengths) else 0.0
        return RewardOutput(-self.coef * excess, {"over_target_fraction": over})
