"""Advantage estimators.

Notation: B sequences, R response tokens. `scores [B]` are outcome rewards, `response_mask
[B, R]` is 1 on real response tokens, `group_index` (length B) names the prompt of each
sample. Every estimator returns `(advantages [B, R], returns [B, R])`, zero where the mask is 0.

The registry `ADVANTAGE_ESTIMATORS` maps a recipe's `algorithm.advantage` to a function; see
:func:`get_advantage_estimator`.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from rlhf.algorithms.groups import group_ids, group_mean_std


def grpo(
    scores: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    response_mask: torch.Tensor,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages: (score - group mean) / (group std + eps).

    GRPO, Shao et al. 2024 (DeepSeekMath), eq. 3 with outcome supervision: every token of a
    response gets its sequence's normalised score. `norm_by_std=False` keeps only the mean
    baseline, Dr. GRPO (Liu et al. 2025), which removes the bias towards low-variance groups.
    The std is the unbiased sample std. Where we differ: a group of one sample gets advantage 0
    (it has no baseline to compare against).

    Args:
        scores: [B] outcome reward per sample.
        group_index: length-B group labels.
        response_mask: [B, R].
    Returns:
        (advantages [B, R], returns [B, R]); returns equal the advantages.
    """
    ids, num_groups = group_ids(group_index, device=scores.device)
    scores = scores.float()
    mean, std, count = group_mean_std(scores, ids, num_groups)
    advantage = scores - mean
    if norm_by_std:
        advantage = advantage / (std + eps)
    advantage = torch.where(count > 1, advantage, torch.zeros_like(advantage))
    advantages = advantage[:, None] * response_mask
    return advantages, advantages


def drgrpo(scores: torch.Tensor, group_index: Sequence | torch.Tensor, response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dr. GRPO (Liu et al. 2025): :func:`grpo` without the division by the group std."""
    return grpo(scores, group_index, response_mask, norm_by_std=False)


ADVANTAGE_ESTIMATORS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "grpo": grpo,
    "drgrpo": drgrpo,
}
"""Estimator name -> function. Outcome estimators take (scores, group_index, response_mask)."""


def get_advantage_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The estimator registered as `name`; an unknown name lists the valid ones."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; valid: {', '.join(sorted(ADVANTAGE_ESTIMATORS))}") from None
