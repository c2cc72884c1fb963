"""Non-finite guards of the training engines: a NaN or inf never reaches the weights.

A loss that is NaN or inf is multiplied by NaN before backward, so every gradient it reaches
is NaN, and the global gradient norm with it. An optimiser step whose gradient norm is not
finite is skipped: weights, AdamW moments and the learning-rate schedule stay as they were,
and the gradients are dropped. One test, the norm, thus covers a bad loss and a bad gradient
alike, and data-parallel ranks agree on it because the norm is global. (DeepSpeed's ZeRO
optimisers skip such a step themselves: they treat an invalid norm as an overflow.)
"""

from __future__ import annotations

import torch


def poison_if_nonfinite(loss: torch.Tensor) -> torch.Tensor:
    """`loss` × 1 when finite, × NaN otherwise (no host sync): the scale is a constant, so a
    finite loss keeps its exact gradient and a non-finite one makes every gradient NaN. (An inf
    loss alone would backpropagate finite gradients: d(inf)/d(loss) is 1.)"""
    scale = torch.where(torch.isfinite(loss.detach()), 1.0, float("nan")).to(loss.dtype)
    return loss * scale


def is_finite(grad_norm: torch.Tensor | float) -> bool:
    """True when an optimiser step with this global gradient norm may be applied."""
    return bool(torch.isfinite(torch.as_tensor(grad_norm)))
