"""Reducing a per-token loss [B, R] to one number, the ways the RL-for-LLMs papers do it.

Notation: B sequences, R response tokens; `loss_mat [B, R]` holds one loss value per token
and `mask [B, R]` is 1 on tokens that count.
"""

from __future__ import annotations

import torch

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
"""Valid `mode` values of :func:`aggregate`."""


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `x` over entries where `mask` is 1 (0 when the mask is empty)."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var(returns − values) / Var(returns) over entries where `mask` is 1 (1: perfect, ≤ 0: no better
    than predicting the mean). Returns a 0-d tensor; 0 when the returns do not vary."""
    residual_var = masked_mean((returns - values - masked_mean(returns - values, mask)) ** 2, mask)
    returns_var = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    if returns_var <= 0:
        return torch.zeros(())
    return 1 - residual_var / returns_var


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
