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


def turn_token_rewards(turn_rewards: torch.Tensor, action_ends: torch.Tensor, width: int) -> torch.Tensor:
    """Each turn's reward on the last token of its action (multi-turn trajectories).

    Args:
        turn_rewards: [B, K] reward of each turn (K turns at most).
        action_ends: [B, K] response column one past each action's last token; -1 for turns
            not played.
        width: R, the response width.
    Returns:
        [B, R] float32, zero except at the actions' last tokens.
    """
    played = action_ends > 0
    rewards = torch.zeros((turn_rewards.shape[0], width + 1), dtype=torch.float32, device=turn_rewards.device)
    # turns not played write 0 into a spare column that is cut off
    columns = torch.where(played, action_ends - 1, torch.full_like(action_ends, width))
    rewards.scatter_add_(1, columns, torch.where(played, turn_rewards.float(), torch.zeros_like(turn_rewards, dtype=torch.float32)))
    return rewards[:, :width]
