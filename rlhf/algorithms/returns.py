"""Token-level recursions (return-to-go, GAE) and masked whitening.

Notation: B sequences, R response tokens. `token_rewards [B, R]` is the reward of each response
token, `values [B, R]` the critic's value of the state before each token, `response_mask [B, R]`
is 1 on real response tokens. Responses are usually right-padded, but every function here is
correct for any 0/1 mask.

The recursions run backwards over R with a Python loop (each step depends on the next one) and
are vectorised over B. Padding is selected away with `torch.where`, not multiplied away, so a
non-finite value stored under the mask cannot leak into valid tokens.
"""

from __future__ import annotations

import torch

WHITEN_EPS = 1e-8
"""Added to the variance before the inverse square root in :func:`whiten`."""


def _check_same_shape(response_mask: torch.Tensor, **tensors: torch.Tensor) -> None:
    """Raise if any tensor's shape differs from the [B, R] mask's."""
    for name, tensor in tensors.items():
        if tensor.shape != response_mask.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; response_mask has {tuple(response_mask.shape)}")


def discounted_returns(token_rewards: torch.Tensor, response_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Return-to-go per token, G_t = r_t + gamma * G_{t+1}, where t+1 is the next valid token.

    Sutton & Barto 2018, eq. 3.9 (the discounted return), truncated at the end of each response.
    A masked position gets G = 0 but passes the running sum through, as :func:`gae` does: in a
    multi-turn trajectory the observation tokens between two actions are holes in the action
    mask, and an early action's return must still include the rewards of later turns.

    Args:
        token_rewards: [B, R].
        response_mask: [B, R] 0/1.
        gamma: discount factor.
    Returns:
        [B, R] float32, zero where the mask is 0.
    """
    _check_same_shape(response_mask, token_rewards=token_rewards)
    rewards = token_rewards.float()
    valid = response_mask.bool()
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(valid[:, t], rewards[:, t] + gamma * running, running)
        returns[:, t] = torch.where(valid[:, t], running, torch.zeros_like(running))
    return returns


def gae(
    token_rewards: torch.Tensor,
    values: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the response tokens.

    Schulman et al. 2016, "High-dimensional continuous control using generalized advantage
    estimation", eqs. 11-16, in its recursive form:

        delta_t = r_t + gamma * V_next - V_t,      A_t = delta_t + gamma * lam * A_next.

    Where we differ from the paper's fixed time steps: "next" is the next *valid* token. A masked
    position carries V_next and A_next through unchanged, so padding anywhere (middle or end)
    changes nothing on the valid tokens. After the last valid token V_next = 0 and A_next = 0
    (the response ends the episode). No whitening here; the caller decides.

    Args:
        token_rewards: [B, R].
        values: [B, R]; values[b, t] is V of the state before response token t.
        response_mask: [B, R] 0/1.
        gamma: discount factor.
        lam: GAE lambda (0: one-step TD error, 1: Monte Carlo return minus V).
    Returns:
        (advantages [B, R], returns [B, R]) float32, returns = advantages + values, both zero
        where the mask is 0.
    """
    _check_same_shape(response_mask, token_rewards=token_rewards, values=values)
    rewards, values = token_rewards.float(), values.float()
    valid = response_mask.bool()
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        # masked positions keep what the next valid token left behind
        next_advantage = torch.where(valid[:, t], advantage, next_advantage)
        next_value = torch.where(valid[:, t], values[:, t], next_value)
        advantages[:, t] = next_advantage
    zeros = torch.zeros_like(advantages)
    returns = torch.where(valid, advantages + values, zeros)
    return torch.where(valid, advantages, zeros), returns


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Masked whitening over all valid entries of the batch: (x - mean) / sqrt(var + 1e-8).

    The statistics pool every entry where `mask` is 1 (all sequences and tokens together), with
    the unbiased variance (divide by count - 1). `shift_mean=False` adds the mean back, which
    only rescales. With fewer than two valid entries the variance is undefined: we then use a
    variance of 1, so the result is only centred (count 1) or returned as is (count 0).

    The result is NOT masked: entries where the mask is 0 hold whitened garbage, and the caller
    multiplies (or selects) by its mask.

    Args:
        x: [B, R] (any shape equal to the mask's).
        mask: [B, R] 0/1.
        shift_mean: subtract the mean (True) or keep it (False).
    Returns:
        whitened x, same shape, floating point (integers are promoted to float32).
    """
    _check_same_shape(mask, x=x)
    x = x if x.is_floating_point() else x.float()
    valid = mask.bool()
    zeros = torch.zeros_like(x)
    count = valid.sum().to(x.dtype)
    mean = torch.where(valid, x, zeros).sum() / count.clamp(min=1)
    squared_dev = torch.where(valid, (x - mean) ** 2, zeros).sum()
    var = torch.where(count > 1, squared_dev / (count - 1).clamp(min=1), torch.ones_like(squared_dev))
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    return whitened if shift_mean else whitened + mean
