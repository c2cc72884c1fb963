"""Critic losses: the clipped squared error of PPO and the HL-Gauss classification critic.

Notation: B sequences, R response tokens, K value bins. `values`, `old_values`, `returns` and
`response_mask` are [B, R]; a classification critic's `logits` are [B, R, K]. Both losses
return `(scalar loss, stats)` with the detached scalar stats `value_mean` and `clip_frac`, so
the trainer can swap one critic for the other.

The public names are re-exported from :mod:`rlhf.algorithms.losses`.
"""

from __future__ import annotations

import math

import torch

from rlhf.algorithms.aggregation import aggregate, masked_mean

HL_GAUSS_SIGMA_RATIO = 0.75
"""Default σ / bin width, the ratio Farebrother et al. 2024 recommend."""


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    clip: float | None = None,
    agg: str = "token-mean",
    norm_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Squared-error critic loss, optionally with PPO's value clipping.

    L = ½·agg(max((v − R)², (v_clip − R)²)) with v_clip = v_old + clamp(v − v_old, −clip, clip).
    The PPO paper (Schulman et al. 2017, eq. 9) uses a plain squared error; the clipped form
    follows the OpenAI baselines PPO2 implementation, which keeps the critic, like the policy,
    near the values it had when the batch was collected. Taking the max makes it pessimistic:
    a step is undone by the clip only when that makes the error larger. `clip=None` gives
    ½·agg((v − R)²).

    Args:
        values: [B, R] current critic outputs.
        old_values: [B, R] critic outputs at rollout time (unused without `clip`).
        returns: [B, R] regression targets.
        response_mask: [B, R], 1 on tokens that count.
        clip: half-width of the trust region around `old_values`, or None.
        agg, norm_length: how token losses are reduced (see :func:`aggregate`).
    Returns:
        (scalar loss, stats) with `clip_frac` (share of valid tokens where the clipped error
        is the larger one; 0 without `clip`) and `value_mean` (masked mean of `values`).
    """
    mask = response_mask.to(values.dtype)
    error = (values - returns).square()
    if clip is None:
        loss_mat = error
        clipped_is_larger = torch.zeros_like(error)
    else:
        values_clipped = old_values + (values - old_values).clamp(-clip, clip)
        error_clipped = (values_clipped - returns).square()
        loss_mat = torch.maximum(error, error_clipped)
        clipped_is_larger = (error_clipped > error).to(mask.dtype)
    with torch.no_grad():
        stats = {
            "clip_frac": masked_mean(clipped_is_larger, mask),
            "value_mean": masked_mean(values, mask),
        }
    return 0.5 * aggregate(loss_mat, mask, agg, norm_length), stats


# ---- HL-Gauss classification critic ------------------------------------------------------
# Farebrother et al. 2024, "Stop Regressing: Training Value Functions via Classification for
# Scalable Deep RL". The critic outputs K logits per token over equal bins of [v_min, v_max];
# it is trained with cross-entropy against a Gaussian N(y, σ²) integrated over each bin
# (the histogram loss with Gaussian smoothing of Imani & White 2018, hence the name), and read
# out as the expected bin centre.


def _check_support(v_min: float, v_max: float, num_bins: int) -> None:
    if not v_max > v_min:
        raise ValueError(f"HL-Gauss support needs v_max > v_min, got [{v_min}, {v_max}]")
    if num_bins < 1:
        raise ValueError(f"HL-Gauss needs at least one bin, got num_bins={num_bins}")


def _bin_edges(v_min: float, v_max: float, num_bins: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[K + 1] edges of K equal bins covering [v_min, v_max]."""
    _check_support(v_min, v_max, num_bins)
    return torch.linspace(v_min, v_max, num_bins + 1, device=device, dtype=dtype)


def hl_gauss_bin_centers(
    v_min: float, v_max: float, num_bins: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """[K] centres of the K equal bins of [v_min, v_max]."""
    edges = _bin_edges(v_min, v_max, num_bins, device, dtype)
    return 0.5 * (edges[:-1] + edges[1:])


def hl_gauss_targets(
    target: torch.Tensor, v_min: float, v_max: float, num_bins: int, sigma: float | None = None
) -> torch.Tensor:
    """HL-Gauss target distribution [..., K] for scalar targets of any shape [...].

    The target y is clamped to [v_min, v_max]; bin k with edges e_k < e_{k+1} gets
    p_k = Φ((e_{k+1} − y)/σ) − Φ((e_k − y)/σ), Φ the standard normal CDF, divided by
    Φ((v_max − y)/σ) − Φ((v_min − y)/σ) so that the truncated Gaussian sums to 1 over the
    support (Farebrother et al. 2024, sec. 3.1). σ defaults to 0.75 × bin width.
    Computed in float32 or wider; no gradient flows into `target`.
    """
    dtype = torch.promote_types(target.dtype, torch.float32)
    edges = _bin_edges(v_min, v_max, num_bins, target.device, dtype)
    if sigma is None:
        sigma = HL_GAUSS_SIGMA_RATIO * (v_max - v_min) / num_bins
    if not sigma > 0:
        raise ValueError(f"HL-Gauss sigma must be positive, got {sigma}")
    y = target.detach().to(dtype).clamp(v_min, v_max)
    cdf = 0.5 * (1.0 + torch.erf((edges - y[..., None]) / (sigma * math.sqrt(2.0))))
    probs = cdf[..., 1:] - cdf[..., :-1]
    return probs / (cdf[..., -1:] - cdf[..., :1])


def hl_gauss_value(logits: torch.Tensor, v_min: float, v_max: float) -> torch.Tensor:
    """Scalar value [...] of a classification critic: Σ_k softmax(logits)_k · centre_k.

    Computed in float32 or wider (half-precision softmax over many bins loses the value).

    Args:
        logits: [..., K] over the K equal bins of [v_min, v_max].
    """
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    centers = hl_gauss_bin_centers(v_min, v_max, logits.shape[-1], logits.device, logits.dtype)
    return torch.softmax(logits, dim=-1) @ centers


def hl_gauss_loss(
    logits: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    v_min: float,
    v_max: float,
    sigma: float | None = None,
    agg: str = "token-mean",
    norm_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cross-entropy of a classification critic against HL-Gauss targets of the returns.

    L = agg(−Σ_k p_k(R) · log softmax(logits)_k), p(R) from :func:`hl_gauss_targets`
    (Farebrother et al. 2024, sec. 3).

    There is no value clipping. The PPO2-style clip is a max over two squared errors of a
    scalar prediction and has no direct counterpart for a cross-entropy over bins; the paper
    trains its critics without it. What the clip guards against is also tamed here: targets are
    clamped to the support, and the gradient with respect to the logits, softmax − p, has
    entries in [−1, 1] however far the return lies from the prediction (the squared error's
    gradient grows with the error). `clip_frac` is reported as 0 only to keep the stats keys
    of :func:`value_loss`.

    Args:
        logits: [B, R, K] critic logits over the bins of [v_min, v_max].
        returns: [B, R] regression targets (clamped to the support).
        response_mask: [B, R], 1 on tokens that count.
        sigma: Gaussian width; default 0.75 × bin width.
        agg, norm_length: how token losses are reduced (see :func:`aggregate`).
    Returns:
        (scalar float32-or-wider loss, stats) with `value_mean` (masked mean of
        :func:`hl_gauss_value`) and `clip_frac` = 0.
    """
    if logits.dim() != 3 or logits.shape[:2] != returns.shape:
        raise ValueError(f"hl_gauss_loss wants logits [B, R, K] and returns [B, R], got {tuple(logits.shape)} and {tuple(returns.shape)}")
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16 critics too
    mask = response_mask.to(logits.dtype)
    targets = hl_gauss_targets(returns, v_min, v_max, logits.shape[-1], sigma)
    loss_mat = -(targets.to(logits.dtype) * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    with torch.no_grad():
        stats = {
            "clip_frac": torch.zeros((), dtype=logits.dtype, device=logits.device),
            "value_mean": masked_mean(hl_gauss_value(logits, v_min, v_max), mask),
        }
    return aggregate(loss_mat, mask, agg, norm_length), stats
