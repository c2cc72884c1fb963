"""Loss aggregation and the clipped policy losses (PPO, GSPO).

Notation: B sequences, R response tokens; `loss_mat [B, R]` holds one loss value per token
and `mask [B, R]` is 1 on tokens that count.

The registry `POLICY_LOSSES` maps a recipe's loss name to a function; see
:func:`get_policy_loss`. The critic losses live in :mod:`rlhf.algorithms.value` and are
re-exported here (lazily, because that module imports :func:`aggregate` from this one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

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
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_mat = torch.maximum(unclipped, clipped)
    if dual_clip is not None:
        bounded = torch.minimum(loss_mat, -advantages * dual_clip)
        loss_mat = torch.where(advantages < 0, bounded, loss_mat)
    with torch.no_grad():
        token_log_ratio = token_log_ratio.clamp(-20.0, 20.0)
        stats = {
            "clip_frac_high": masked_mean(((seq_ratio > 1 + clip_high) & (advantages > 0)).to(mask.dtype), mask),
            "clip_frac_low": masked_mean(((seq_ratio < 1 - clip_low) & (advantages < 0)).to(mask.dtype), mask),
            "approx_kl": masked_mean(token_log_ratio.exp() - 1 - token_log_ratio, mask),
        }
    return aggregate(loss_mat, mask, agg, norm_length), stats


PolicyLoss = Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]]

POLICY_LOSSES: dict[str, PolicyLoss] = {
    "ppo": ppo_policy_loss,
    "gspo": gspo_policy_loss,
}
"""Loss name -> function. All take (logprobs, old_logprobs, advantages, response_mask) and the
keywords clip_low, clip_high, dual_clip, agg, norm_length, and return (loss, stats) with the
same stats keys."""


def get_policy_loss(name: str) -> PolicyLoss:
    """The policy loss registered as `name`; an unknown name lists the valid ones."""
    try:
        return POLICY_LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown policy loss {name!r}; valid: {', '.join(sorted(POLICY_LOSSES))}") from None


# ---- re-exports of the critic losses -------------------------------------------------------
# rlhf.algorithms.value imports `aggregate` from here, so importing it at the top (or bottom)
# of this file would be circular for whichever module is imported first. A module-level
# __getattr__ (PEP 562) resolves the names on first use instead, in either import order.

_VALUE_EXPORTS = ("value_loss", "hl_gauss_bin_centers", "hl_gauss_targets", "hl_gauss_value", "hl_gauss_loss")

if TYPE_CHECKING:
    from rlhf.algorithms.value import hl_gauss_bin_centers, hl_gauss_loss, hl_gauss_targets, hl_gauss_value, value_loss  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _VALUE_EXPORTS:
        from rlhf.algorithms import value

        return getattr(value, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
