"""Reward shaping terms added to outcome scores.

Notation: B sequences. Inputs and outputs are [B] per-sequence tensors.
"""

from __future__ import annotations

import torch


def overlong_penalty(lengths: torch.Tensor, max_length: int, buffer_length: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, sec. 3.4, eq. 13).

    With L = max_length and C = buffer_length, a response of length |y| gets
        0                           if |y| ≤ L − C,
        ((L − C) − |y|) / C · p     if L − C < |y| ≤ L   (linear from 0 down to −p),
        −p                          if |y| > L,
    with p = `penalty` (the paper uses p = 1). Long answers are nudged shorter without the
    cliff of a hard penalty at the truncation length.

    Args:
        lengths: [B] response lengths in tokens (int or float).
        max_length: L, the length at which the penalty reaches −p.
        buffer_length: C ≥ 1, the width of the linear ramp.
        penalty: p, the magnitude of the full penalty.
    Returns:
        [B] float32 penalties in [−p, 0].
    """
    if buffer_length < 1:
        raise ValueError(f"overlong_penalty needs buffer_length >= 1, got {buffer_length}")
    ramp = ((max_length - buffer_length) - lengths.to(torch.float32)) / buffer_length
    return ramp.clamp(-1.0, 0.0) * penalty
