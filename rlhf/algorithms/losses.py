"""Loss aggregation and the PPO clipped policy loss.

Notation: B sequences, R response tokens; `loss_mat [B, R]` holds one loss value per token
and `mask [B, R]` is 1 on tokens that count.
"""

from __future__ import annotations

import torch

from rlhf.algorithms.logprobs import entropy_from_logits  # noqa: F401  (public here too, issue 3's name)

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Valid `mode` values of :func:`aggregate`."""


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over entries where `mask` is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def aggregate(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", norm_length: int | None = None) -> torch.Tensor:
    """Reduce a [B, R] token loss to a scalar.

    Modes:
        token-mean: sum over all valid tokens / their number (every token weighs the same;
            DAPO, Yu et al. 2025, sec. 3.3).
        seq-mean-token-sum: each sequence's token sum, then the mean over sequences.
        seq-mean-token-mean: each sequence's token mean, then the mean over sequences
            (the original GRPO normalisation).
        seq-mean-token-sum-norm: each sequence's token sum / `norm_length` (default R), then
            the mean over sequences (Dr. GRPO, Liu et al. 2025).
    Sequences without any valid token are left out of the sequence means.
    """
    mask = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        return masked_mean(loss_mat, mask)
    token_sum = (loss_mat * mask).sum(dim=-1)
    tokens = mask.sum(dim=-1)
    if mode == "seq-mean-token-sum":
        per_seq = token_sum
    elif mode == "seq-mean-token-mean":
        per_seq = token_sum / tokens.clamp(min=1)
    elif mode == "seq-mean-token-sum-norm":
        per_seq = token_sum / (norm_length or loss_mat.shape[-1])
    else:
        raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(LOSS_AGG_MODES)}")
    has_tokens = (tokens > 0).to(loss_mat.dtype)
    return (per_seq * has_tokens).sum() / has_tokens.sum().clamp(min=1)


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
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO clipped surrogate, per token.

    Schulman et al. 2017, eq. 7: L = -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) with
    ρ = exp(logprobs - old_logprobs). The asymmetric range is DAPO's clip-higher (Yu et al.
    2025). With `dual_clip` = c > 1 (Ye et al. 2020), the loss of negative-advantage tokens is
    bounded by -c·A. The log-ratio is clamped to ±20 so exp never overflows.

    Args:
        logprobs, old_logprobs, advantages, response_mask: [B, R].
        agg, norm_length: how token losses are reduced (see :func:`aggregate`).
    Returns:
        (scalar loss, stats) with stats `clip_frac_high`, `clip_frac_low` (share of valid
        tokens whose ratio was clipped above / below) and `approx_kl` (k3 estimate of
        KL(old || new)), all detached scalars.
    """
    log_ratio = (logprobs - old_logprobs).clamp(-20.0, 20.0)
    ratio = log_ratio.exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        bounded = torch.minimum(loss_mat, -advantages * dual_clip)
        loss_mat = torch.where(advantages < 0, bounded, loss_mat)
    mask = response_mask.to(logprobs.dtype)
    with torch.no_grad():
        stats = {
            "clip_frac_high": masked_mean(((ratio > 1 + clip_high) & (advantages > 0)).to(mask.dtype), mask),
            "clip_frac_low": masked_mean(((ratio < 1 - clip_low) & (advantages < 0)).to(mask.dtype), mask),
            "approx_kl": masked_mean(ratio - 1 - log_ratio, mask),
        }
    return aggregate(loss_mat, mask, agg, norm_length), stats
