"""How far two sets of log-probabilities of the same tokens are apart: the rollout engine's
(recorded while sampling) against the trainer's (recomputed by its forward pass).

Both score the same tokens with the same weights, so in exact arithmetic they agree; a gap
means a stale or broken weight sync, or a numerical mismatch between the two engines (which
makes PPO's importance ratios off-policy without anyone noticing).

Notation: B sequences, R response tokens.
"""

from __future__ import annotations

import torch


def logprob_gap(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max of |a − b| over the tokens where `mask` is 1.

    Args:
        a, b: [B, R] log-probabilities of the same tokens.
        mask: [B, R] 1 on valid tokens, 0 on padding.
    Returns:
        (mean, max) float32 scalar tensors; both 0 when no token is valid.
    """
    assert a.shape == b.shape == mask.shape, (tuple(a.shape), tuple(b.shape), tuple(mask.shape))
    gap = (a.float() - b.float()).abs()[mask.bool()]
    if gap.numel() == 0:
        return torch.zeros(()), torch.zeros(())
    return gap.mean(), gap.max()
