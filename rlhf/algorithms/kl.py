"""KL(policy || reference) estimators from sampled tokens (Schulman, "Approximating KL
divergence", 2020).

Notation: B sequences, R response tokens; inputs are [B, R] log-probabilities of the sampled
tokens under the policy (`logprobs`) and the reference (`ref_logprobs`).
"""

from __future__ import annotations

from typing import Callable

import torch


def _k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _abs(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio.abs()


def _k2(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()


def _k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # With r = ref - lp: exp(r) - r - 1 >= 0, unbiased, low variance. Clamps keep it finite.
    ref_minus_lp = (-log_ratio).clamp(-20.0, 20.0)
    return (ref_minus_lp.exp() - ref_minus_lp - 1).clamp(-10.0, 10.0)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": _k1,
    "abs": _abs,
    "k2": _k2,
    "k3": _k3,
    "low_var_kl": _k3,
}
"""Estimator name -> function of the log-ratio lp - ref."""


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token KL estimate [B, R].

    k1 = lp − ref (unbiased, high variance, can be negative); abs = |lp − ref|;
    k2 = ½(lp − ref)²; k3 (alias low_var_kl) = exp(ref − lp) − (ref − lp) − 1, with the
    exponent's input clamped to ±20 and the result to ±10.
    """
    try:
        estimator = KL_ESTIMATORS[kind]
    except KeyError:
        raise ValueError(f"unknown KL estimator {kind!r}; valid: {', '.join(KL_ESTIMATORS)}") from None
    return estimator(logprobs - ref_logprobs)
