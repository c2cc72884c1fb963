"""The clipped policy losses (PPO, GSPO); the public home of every loss.

Notation: B sequences, R response tokens; token tensors are [B, R] and `response_mask [B, R]`
is 1 on tokens that count.

The registry `POLICY_LOSSES` maps a recipe's loss name to a function; see
:func:`get_policy_loss`. Aggregation (:mod:`rlhf.algorithms.aggregation`), the critic losses
(:mod:`rlhf.algorithms.value`) and entropy are re-exported here.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.algorithms.aggregation import LOSS_AGG_MODES, aggregate, masked_mean  # noqa: F401  (public here too)
from rlhf.algorithms.logprobs import entropy_from_logits  # noqa: F401  (also public here, where it was first defined)
from rlhf.algorithms.value import hl_gauss_bin_centers, hl_gauss_loss, hl_gauss_targets, hl_gauss_value, value_loss  # noqa: F401

def clipped_surrogate(
    ratio: torch.Tensor, advantages: torch.Tensor, clip_low: float, clip_high: float, dual_clip: float | None = None,
) -> torch.Tensor:
    """Per-token loss −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)·A), with the dual clip (Ye et al.
    2020) bounding it by −c·A where A < 0 when `dual_clip` = c is given. All tensors [B, R]."""
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    if dual_clip is None:
        return loss_mat
    return torch.where(advantages < 0, torch.minimum(loss_mat, -advantages * dual_clip), loss_mat)


@torch.no_grad()
def _clip_stats(
    ratio: torch.Tensor, log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip_low: float, clip_high: float,
) -> dict[str, torch.Tensor]:
    """Shares of valid tokens clipped above / below, and the k3 estimate of KL(old || new)."""
    return {
        "clip_frac_high": masked_mean(((ratio > 1 + clip_high) & (advantages > 0)).to(mask.dtype), mask),
        "clip_frac_low": masked_mean(((ratio < 1 - clip_low) & (advantages < 0)).to(mask.dtype), mask),
        "approx_kl": masked_mean(log_ratio.exp() - 1 - log_ratio, mask),
    }


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    agg: str = "token-mean",
    norm_length: int | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO clipped surrogate, per token.

    Schulman et al. 2017, eq. 7: L = -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) with
    ρ = exp(logprobs - old_logprobs). The asymmetric range is DAPO's clip-higher (Yu et al.
    2025). With `dual_clip` = c > 1 (Ye et al. 2020), the loss of negative-advantage tokens is
    bounded by -c·A. The log-ratio is clamped to ±20 so exp never overflows.

    Args:
        logprobs, old_logprobs, advantages, response_mask: [B, R].
        agg, norm_length: how token losses are reduced (see :func:`aggregate`).
        weights: [B, R] constant per-token weights of an off-policy correction
            (:mod:`rlhf.algorithms.off_policy`), multiplying each token's loss; None: all 1.
    Returns:
        (scalar loss, stats) with stats `clip_frac_high`, `clip_frac_low` (share of valid
        tokens whose ratio was clipped above / below) and `approx_kl` (k3 estimate of
        KL(old || new)), all detached scalars.
    """
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    loss_mat = clipped_surrogate(ratio, advantages, clip_low, clip_high, dual_clip)
    mask = response_mask.to(logprobs.dtype)
    stats = _clip_stats(ratio, log_ratio, advantages, mask, clip_low, clip_high)
    return aggregate(_weighted(loss_mat, weights), mask, agg, norm_length), stats


def gspo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: float = 3e-4,
    clip_high: float = 4e-4,
    dual_clip: float | None = None,
    agg: str = "seq-mean-token-mean",
    norm_length: int | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Group Sequence Policy Optimization: PPO's clipped surrogate on a sequence-level ratio.

    Zheng et al. 2025 (GSPO), sec. 4: s_i = exp(mean_t(logprobs − old_logprobs)) over the
    valid tokens of sequence i, the geometric mean of its token ratios, so one noisy token
    cannot swing the update. We use the GSPO-token form (sec. 4.3),
    s_{i,t} = sg[s_i] · exp(logprobs_t − sg[logprobs_t]): its value is s_i on every token, its
    gradient s_i · ∇logprobs_t, so advantages may differ per token. With one advantage per
    sequence and the default `seq-mean-token-mean` aggregation this equals the sequence-level
    GSPO objective and gradient. Then, per token, L = −min(s·A, clip(s, 1−ε_low, 1+ε_high)·A),
    so every token of a sequence is clipped together. The ranges are tiny (paper: 3e-4 /
    4e-4) because a length-normalised ratio moves far less than a token ratio. `dual_clip`
    works as in :func:`ppo_policy_loss`. The sequence log-ratio is clamped to ±20.

    Args:
        logprobs, old_logprobs, advantages, response_mask: [B, R].
        agg, norm_length: how token losses are reduced (see :func:`aggregate`).
        weights: [B, R] off-policy correction weights, as in :func:`ppo_policy_loss`.
    Returns:
        (scalar loss, stats) with the keys of :func:`ppo_policy_loss`: `clip_frac_high`,
        `clip_frac_low` (share of valid tokens whose sequence ratio was clipped above /
        below) and `approx_kl` (token-level k3 estimate of KL(old || new), comparable
        across losses), all detached scalars.
    """
    mask = response_mask.to(logprobs.dtype)
    # Padding may hold anything: zero its log-ratio before the per-sequence mean.
    token_log_ratio = torch.where(mask > 0, logprobs.detach() - old_logprobs, torch.zeros_like(logprobs))
    seq_log_ratio = (token_log_ratio.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)).clamp(-20.0, 20.0)
    seq_ratio = seq_log_ratio.exp()[:, None]  # [B, 1], sg[s_i]
    # Value s_i on every token; gradient s_i · ∇logprobs_t flows through each token.
    ratio = seq_ratio * (logprobs - logprobs.detach()).exp()  # [B, R]
    loss_mat = clipped_surrogate(ratio, advantages, clip_low, clip_high, dual_clip)
    stats = _clip_stats(seq_ratio.expand_as(ratio), token_log_ratio.clamp(-20.0, 20.0), advantages, mask, clip_low, clip_high)
    return aggregate(_weighted(loss_mat, weights), mask, agg, norm_length), stats


def _weighted(loss_mat: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """`loss_mat` times constant per-token weights (an off-policy correction), if any."""
    if weights is None:
        return loss_mat
    assert weights.shape == loss_mat.shape, (tuple(weights.shape), tuple(loss_mat.shape))
    return loss_mat * weights.detach().to(loss_mat.dtype)


PolicyLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]

POLICY_LOSSES: dict[str, PolicyLoss] = {
    "ppo": ppo_policy_loss,
    "gspo": gspo_policy_loss,
}
"""Loss name -> function. All take (logprobs, old_logprobs, advantages, response_mask) and the
keywords clip_low, clip_high, dual_clip, agg, norm_length, weights, and return (loss, stats) with the
same stats keys."""


def get_policy_loss(name: str) -> PolicyLoss:
    """The policy loss registered as `name`; an unknown name lists the valid ones."""
    try:
        return POLICY_LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown policy loss {name!r}; valid: {', '.join(sorted(POLICY_LOSSES))}") from None
