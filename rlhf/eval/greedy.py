"""Greedy held-out evaluation: one deterministic response per prompt, scored by the rewards."""

from __future__ import annotations

import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import CORRECT_AT
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine, SamplingParams



def greedy_accuracy(rollout: RolloutEngine, reward: RewardCombiner, prompts: list[Batch], max_new_tokens: int) -> dict[str, float]:
    """`eval/accuracy`: the share of prompts whose greedy response the first reward source
    (the verifier) scores 1; `eval/reward`: the mean total reward; `eval/response_length`.

    Args:
        prompts: pre-tokenised prompt batches (see `rlhf.data.prompts.prompt_batch`).
    """
    sampling = SamplingParams(max_new_tokens=max_new_tokens, greedy=True)
    correct, totals, lengths = zip(*(score_responses(reward, rollout.generate(chunk, sampling)) for chunk in prompts))
    return {
        "eval/accuracy": torch.cat(correct).float().mean().item(),
        "eval/reward": torch.cat(totals).mean().item(),
        "eval/response_length": torch.cat(lengths).mean().item(),
    }


def score_responses(reward: RewardCombiner, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(correct [B] bool: the first reward source, the verifier, scores 1; total reward [B]
    float32; response length [B] float32 in tokens) of a generated batch."""
    total, per_source, _ = reward.score(batch)
    verifier = next(iter(per_source.values()))
    return verifier >= CORRECT_AT, total, batch["response_mask"].sum(dim=-1).float()
