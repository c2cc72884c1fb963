"""Token-level rewards built from an outcome score.

Notation: B sequences, R response tokens, `response_mask [B, R]`.
"""

from __future__ import annotations

import torch


def outcome_token_rewards(scores: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Place each sequence's outcome score on its last valid response token.

    This is the usual sparse reward of RLHF and reasoning RL (Ouyang et al. 2022; every token
    but the last earns 0), the input of token-level estimators such as GAE and REINFORCE++.

    Args:
        scores: [B] outcome reward per sequence.
        response_mask: [B, R] 1 on valid tokens (any 0/1 pattern; the last 1 of a row counts).
    Returns:
        [B, R] float32, zero everywhere except the last valid token; a row without valid
        tokens gets no reward.
    """
    mask = response_mask.float()
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    last = torch.where(mask > 0, positions, -1).amax(dim=-1, keepdim=True)
    is_last = (positions == last) & (mask > 0)
    return torch.where(is_last, scores.float()[:, None], torch.zeros((), device=mask.device))
