"""Turn-level credit for multi-turn episodes: returns over turns, a leave-one-out per-turn
baseline that stays unbiased when episodes have different numbers of turns, and the spreading
of per-turn values onto the action tokens.

Notation: B episodes (one per row), K turns (the most any episode of the batch has), R response
tokens. `turn_rewards [B, K]` is the reward of each turn, `turn_mask [B, K]` is 1 for the turns
an episode played (k < its number of turns), `turn_index [B, R]` is k on the tokens of action k
and -1 on observation and padding tokens, `action_mask [B, R]` is 1 on tokens the policy
generated, `group_index` (length B) names the prompt of each episode. `gamma` is the discount
over turns (`algorithm.turn_gamma`).

Episode i of a group reaches turns k = 0 .. n_i - 1; s_k^i is everything it has seen before its
action at turn k (prompt, earlier actions and observations), a_k^i that action (a whole
utterance: log pi(a_k | s_k) is the sum of its tokens' log-probabilities), r_k^i its reward.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhf.algorithms.groups import group_ids

__all__ = ["spread_over_tokens", "turn_advantages", "turn_baseline", "turn_returns", "turn_rloo"]


def _floating(x: torch.Tensor) -> torch.Tensor:
    """Floating tensors keep their dtype (float64 stays exact in tests); others become float32."""
    return x if x.is_floating_point() else x.float()


def _check_shape(name: str, tensor: torch.Tensor, shape: torch.Size, like: str) -> None:
    if tensor.shape != shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; {like} has {tuple(shape)}")


def turn_returns(turn_rewards: torch.Tensor, turn_mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Discounted return-to-go over turns, G_k = sum_{j >= k} gamma^(j - k) r_j.

    Sutton & Barto 2018, eq. 3.9, with turns as the time steps. Computed backwards,
    G_k = r_k + gamma G_{k+1}; a turn where the mask is 0 gets 0 and passes nothing on, so
    each episode sums only its own turns.

    Args:
        turn_rewards: [B, K].
        turn_mask: [B, K] 0/1.
        gamma: discount over turns.
    Returns:
        [B, K], the dtype of `turn_rewards` (float32 for integers), 0 where the mask is 0.
    """
    _check_shape("turn_rewards", turn_rewards, turn_mask.shape, "turn_mask")
    rewards = _floating(turn_rewards)
    played = turn_mask.bool()
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for k in reversed(range(rewards.shape[1])):
        running = torch.where(played[:, k], rewards[:, k] + gamma * running, torch.zeros_like(running))
        returns[:, k] = running
    return returns


def turn_baseline(returns: torch.Tensor, turn_mask: torch.Tensor, group_index: Sequence | torch.Tensor) -> torch.Tensor:
    """Per-turn leave-one-out baseline: b_k^i is built from the OTHER episodes of i's group only.

    b_k^i = mean of G_k^j over the episodes j != i of the same group that reached turn k. When
    none did (episode i is the longest, or its group has no other episode) b_k^i is carried
    forward from b_{k-1}^i (0 at k = 0, i.e. for a group of one): still a function of the other
    episodes alone, and closer to them than 0 when rewards come at the end.

    Why it is unbiased (see :func:`turn_advantages` for the whole estimator): the episodes of a
    group are i.i.d. given the prompt, and b_k^i reads only the others, so it is independent of
    episode i. Condition on the others and on episode i's history h_k^i up to s_k^i; whether i
    reached turn k, and s_k^i, are functions of h_k^i, and
    E[b_k^i grad log pi(a_k^i | s_k^i) | others, h_k^i] = b_k^i E_{a ~ pi(.|s_k^i)}[grad log pi(a | s_k^i)] = 0.

    Two baselines that look alike are biased:
    - the group mean INCLUDING episode i (GRPO-style). Where c others reached turn k it equals
      c/(c+1) times this leave-one-out advantage, so turn k's term is weighted by c/(c+1),
      which shrinks with k as fewer others reach late turns (and is 0 when no other did): late
      turns are systematically under-weighted. With equal lengths in groups of N this is a harmless
      uniform (N-1)/N; with variable lengths it changes the direction of the gradient.
    - anything that reads episode i's own number of turns n_i: a mean over i's turns, a
      division by n_i, comparing only with episodes of the same length. n_i is decided by a_k^i
      and the actions after it, so it does not factor out of E[. grad log pi(a_k^i | s_k^i)].
      (A baseline may depend on i's past, h_k^i, but never on a_k^i or its future.)

    Args:
        returns: [B, K] return-to-go per turn (:func:`turn_returns`).
        turn_mask: [B, K] 0/1.
        group_index: length-B group labels (a list or a 1-D tensor).
    Returns:
        [B, K], the dtype of `returns`, 0 where the mask is 0.
    """
    _check_shape("returns", returns, turn_mask.shape, "turn_mask")
    if len(group_index) != returns.shape[0]:
        raise ValueError(f"group_index has {len(group_index)} labels; returns has {returns.shape[0]} rows")
    returns = _floating(returns)
    played = turn_mask.to(returns.dtype)
    # selected, not multiplied, away: a non-finite value under the mask must not reach the sums
    own = torch.where(turn_mask.bool(), returns, torch.zeros_like(returns))
    ids, num_groups = group_ids(group_index, device=returns.device)
    zeros = torch.zeros(num_groups, returns.shape[1], dtype=returns.dtype, device=returns.device)
    # group totals minus the episode's own contribution: the others' sums and counts per turn
    others_sum = zeros.index_add(0, ids, own)[ids] - own
    others_count = zeros.index_add(0, ids, played)[ids] - played
    baseline = torch.zeros_like(returns)
    carried = torch.zeros_like(returns[:, 0])
    for k in range(returns.shape[1]):
        reached = others_count[:, k] > 0
        carried = torch.where(reached, others_sum[:, k] / others_count[:, k].clamp(min=1), carried)
        baseline[:, k] = carried
    return torch.where(turn_mask.bool(), baseline, torch.zeros_like(baseline))


def spread_over_tokens(turn_values: torch.Tensor, turn_index: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """Give every token of action k the value of turn k; 0 on observation and padding tokens.

    Args:
        turn_values: [B, K].
        turn_index: [B, R] long, k on the tokens of action k, -1 elsewhere.
        action_mask: [B, R] 0/1, 1 on generated tokens.
    Returns:
        [B, R], the dtype of `turn_values`; 0 where the action mask is 0 or turn_index is -1.
    """
    _check_shape("turn_index", turn_index, action_mask.shape, "action_mask")
    if turn_values.shape[0] != turn_index.shape[0]:
        raise ValueError(f"turn values have {turn_values.shape[0]} rows; turn_index has {turn_index.shape[0]}")
    values = _floating(turn_values)
    on_action = action_mask.bool() & (turn_index >= 0)
    # padding (-1) reads column 0 and is then selected away
    spread = values.gather(1, turn_index.long().clamp(min=0))
    return torch.where(on_action, spread, torch.zeros_like(spread))


def turn_advantages(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-turn REINFORCE advantages with the leave-one-out baseline: A_k^i = gamma^k (G_k^i - b_k^i).

    G is the return-to-go over turns (:func:`turn_returns`), b the other episodes' mean at
    turn k (:func:`turn_baseline`). For one group of N episodes drawn i.i.d. from pi_theta,

        E[ 1/N sum_i sum_{k < n_i} A_k^i grad log pi(a_k^i | s_k^i) ] = grad J(theta),
        J(theta) = E[ sum_k gamma^k r_k ],

    exactly, whatever the episodes' numbers of turns: REINFORCE with reward-to-go and a baseline
    (Williams 1992; Sutton & Barto 2018, sec. 13.3-13.4, whose update carries the same
    gamma^k). Proof: the rewards before turn k are fixed by the history h_k up to s_k, and
    E[grad log pi(a_k | s_k) | h_k] = 0, so grad J = E[sum_k gamma^k G_k grad log pi(a_k | s_k)];
    the baseline's term has expectation 0 (:func:`turn_baseline`). With turn_gamma = 1 (the
    default) the factor is 1 and J is the expected total reward. Where we differ from the common
    practice of dropping gamma^k: without it the update is not the gradient of any objective
    when gamma < 1 (Nota & Thomas 2020, "Is the policy gradient a gradient?"). A group of one
    episode gets b = 0: plain REINFORCE, still unbiased.

    No std normalisation: a per-turn or per-episode scale reweights the terms and changes the
    direction of the gradient.

    Args:
        turn_rewards: [B, K].
        turn_mask: [B, K] 0/1.
        group_index: length-B group labels.
        gamma: discount over turns.
    Returns:
        (advantages [B, K], returns G [B, K]), the dtype of `turn_rewards` (float32 for
        integers), 0 where the mask is 0.
    """
    returns = turn_returns(turn_rewards, turn_mask, gamma)
    baseline = turn_baseline(returns, turn_mask, group_index)
    discount = gamma ** torch.arange(returns.shape[1], device=returns.device, dtype=returns.dtype)
    return (returns - baseline) * discount, returns


def turn_rloo(
    turn_rewards: torch.Tensor,
    turn_mask: torch.Tensor,
    turn_index: torch.Tensor,
    response_mask: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    turn_gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The registered estimator: :func:`turn_advantages` given to every token of its action.

    Summed over the tokens of action k, A_k grad log pi(token) is A_k grad log pi(a_k | s_k),
    so the statement of :func:`turn_advantages` holds for the token-summed policy-gradient loss
    on fresh samples (ratio 1, PPO's first epoch), and for any loss that divides by a constant
    (seq-mean-token-sum, seq-mean-token-sum-norm). A loss that divides each episode by its own
    token count (seq-mean-token-mean) reweights by the episode's length, which its actions
    decide, and brings a bias back.

    Args:
        turn_rewards: [B, K].
        turn_mask: [B, K] 0/1.
        turn_index: [B, R] long.
        response_mask: [B, R] the ACTION mask (1 on generated tokens only).
        group_index: length-B group labels.
        turn_gamma: discount over turns.
    Returns:
        (advantages [B, R], returns [B, R]) float32; returns are G_k (without gamma^k) on the
        tokens of action k. Both 0 off the action tokens.
    """
    advantages, returns = turn_advantages(turn_rewards, turn_mask, group_index, turn_gamma)
    return (
        spread_over_tokens(advantages, turn_index, response_mask).float(),
        spread_over_tokens(returns, turn_index, response_mask).float(),
    )


def archer_token_advantages(utterance_advantages: torch.Tensor, turn_index: torch.Tensor, response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ArCHer's low level (Zhou et al. 2024, sec. 4): the token policy inside turn k is trained
    with the high-level critic's utterance advantage A(s_k, a_k) = Q(s_k, a_k) - V(s_k) as the
    return of every one of its tokens (no discount within the turn), so the token-level update
    is REINFORCE (or PPO's clipped surrogate) on the critic's judgement of the whole utterance.

    Args:
        utterance_advantages: [B, K] from the utterance critic (0 on turns not played).
        turn_index: [B, R] turn of each action token (-1 elsewhere).
        response_mask: [B, R] the action mask.
    Returns:
        (advantages [B, R], returns [B, R]) float32, both the spread utterance advantages.
    """
    advantages = spread_over_tokens(utterance_advantages, turn_index, response_mask).float()
    return advantages, advantages
