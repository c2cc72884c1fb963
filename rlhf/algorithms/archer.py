"""ArCHer's utterance-level critic: TD targets, losses, soft target updates and advantages.

Zhou, Zanette, Pan, Levine, Kumar 2024, "ArCHer: Training Language Model Agents via
Hierarchical Multi-Turn RL", §4 (the practical instantiation). The high level is an
off-policy actor-critic over *utterances*: a state s is the conversation so far, an action a is
one whole utterance of the policy (one turn), r its reward and s' the conversation after the
environment answered. The critic has two Q heads (clipped double Q) and a V head, each with a
slowly moving target copy; the token-level policy is then trained within each turn with the
utterance-level advantage Q(s, a) − V(s) as the reward of the turn.

Notation: N transitions (turns sampled from the replay buffer, or the turns of a batch).
Every function takes and returns [N] tensors; nothing here reads a config or calls `.item()`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import torch

from rlhf.algorithms.aggregation import explained_variance


def _check_transitions(**tensors: torch.Tensor) -> None:
    """Raise unless every tensor is 1-D and all have the same length N."""
    shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
    if any(len(shape) != 1 for shape in shapes.values()) or len(set(shapes.values())) > 1:
        raise ValueError(f"expected [N] tensors of one length N, got shapes {shapes}")


def q_targets(rewards: torch.Tensor, next_values: torch.Tensor, terminal: torch.Tensor, gamma: float) -> torch.Tensor:
    """The Q heads' regression target y = r + γ · V̄(s'), with no bootstrap after a real end.

    The paper's Q loss (§4): E_{(s, a, r, s') ~ D} [(Q(s, a) − r − γ V̄(s'))²], V̄ the target
    network's V. `terminal` is True only where the episode *ended* after this turn (the
    environment said done); a turn after which the episode was cut by the turn or token budget
    is not terminal: its next state is a real state whose value the episode never saw, so it
    bootstraps (treating a time-out as an end would teach the critic that the budget itself
    costs reward). Terminal rows are selected away with `torch.where`, so a non-finite value
    read after the end cannot leak into the target.

    Args:
        rewards: [N] reward of each turn.
        next_values: [N] V̄(s') of the state after each turn (any value where terminal).
        terminal: [N] bool, True where the episode ended with done after this turn.
        gamma: discount over turns.
    Returns:
        [N] float32 targets.
    """
    _check_transitions(rewards=rewards, next_values=next_values, terminal=terminal)
    bootstrap = torch.where(terminal.bool(), torch.zeros_like(next_values, dtype=torch.float32), next_values.float())
    return rewards.float() + gamma * bootstrap


def v_targets(target_q1: torch.Tensor, target_q2: torch.Tensor) -> torch.Tensor:
    """The V head's regression target: min(Q̄1(s, a), Q̄2(s, a)) of the two target Q heads.

    The paper's V loss (§4): E_{s ~ D} E_{a ~ π(·|s)} [(V(s) − min(Q̄1, Q̄2)(s, a))²], with a
    fresh utterance a sampled from the *current* policy at each buffer state. Where we differ:
    we use the utterance a that the buffer stored (sampling a new utterance per state inside
    every critic step would mean generating text in the critic's update). V then estimates the
    value of the buffer's behaviour policies (a SARSA-style, in-sample target, as IQL's with
    expectile 1/2) rather than of the current policy; with a buffer of recent turns the two are
    close, and the advantage Q − V keeps its sign where the current policy is better or worse
    than its recent self. The minimum over two Q heads is the paper's (and TD3's) guard against
    the over-estimation a single bootstrapped Q accumulates.

    Args:
        target_q1, target_q2: [N] the target Q heads at (s, a).
    Returns:
        [N] float32.
    """
    _check_transitions(target_q1=target_q1, target_q2=target_q2)
    return torch.minimum(target_q1.float(), target_q2.float())


class CriticLosses(NamedTuple):
    """The two TD regressions of one critic step (0-d tensors) and the TD error per transition."""

    q_loss: torch.Tensor
    """mean (Q1 − y)² + mean (Q2 − y)²: both Q heads regress on the same target."""
    v_loss: torch.Tensor
    """mean (V − min Q̄)²."""
    td_error: torch.Tensor
    """[N] min(Q1, Q2) − y, detached (for metrics)."""


def critic_losses(q1: torch.Tensor, q2: torch.Tensor, v: torch.Tensor, q_target: torch.Tensor, v_target: torch.Tensor) -> CriticLosses:
    """ArCHer's critic objectives (§4): squared TD errors of both Q heads on y = r + γ V̄(s')
    and of the V head on min(Q̄1, Q̄2)(s, a); both targets come from the target networks and
    carry no gradient (they are detached here, whatever the caller passes).

    Args:
        q1, q2: [N] online Q heads at (s, a).
        v: [N] online V head at s.
        q_target: [N] from :func:`q_targets`.
        v_target: [N] from :func:`v_targets`.
    Returns:
        :class:`CriticLosses` (means over the N transitions; the caller adds them or weighs them).
    """
    _check_transitions(q1=q1, q2=q2, v=v, q_target=q_target, v_target=v_target)
    y, v_goal = q_target.detach().float(), v_target.detach().float()
    q_loss = ((q1.float() - y) ** 2).mean() + ((q2.float() - y) ** 2).mean()
    v_loss = ((v.float() - v_goal) ** 2).mean()
    td_error = (torch.minimum(q1, q2).float() - y).detach()
    return CriticLosses(q_loss, v_loss, td_error)


@torch.no_grad()
def soft_update_(target_params: Iterable[torch.Tensor], online_params: Iterable[torch.Tensor], tau: float) -> None:
    """Polyak averaging of the target networks, in place: target ← (1 − τ) · target + τ · online.

    ArCHer (§4) moves its target critic this way after each critic step, as DDPG and SAC do,
    so the bootstrapped targets change slowly and TD does not chase its own output.
    τ = 1 copies the online weights; τ = 0 freezes the target.

    Args:
        target_params, online_params: the two networks' parameters in the same order and shapes.
        tau: in [0, 1].
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"soft_update_: tau must be in [0, 1], got {tau}")
    targets, onlines = list(target_params), list(online_params)
    if len(targets) != len(onlines) or any(t.shape != o.shape for t, o in zip(targets, onlines)):
        raise ValueError("soft_update_: the target and online networks have different parameters")
    for target, online in zip(targets, onlines):
        target.mul_(1.0 - tau).add_(online.detach().to(target.dtype), alpha=tau)


def utterance_advantages(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The advantage of each turn's utterance, A(s, a) = Q(s, a) − V(s) (§4).

    This is the reward the low-level (token) policy sees at the end of the turn's tokens; it is
    centred on the value of the state, so a turn is pushed up exactly when the critic thinks the
    utterance beats what is usually said there.

    Args:
        q: [N] (or [B, K] turns of a batch) Q(s, a) (the critic uses min of its two online Q heads).
        v: V(s), the shape of `q`.
    Returns:
        float32 of that shape, detached: advantages are constants for the policy's gradient.
    """
    if q.shape != v.shape:
        raise ValueError(f"utterance_advantages: q has shape {tuple(q.shape)}, v has {tuple(v.shape)}")
    return (q.float() - v.float()).detach()


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation (0-d; 0 when either side does not vary)."""
    x, y = x - x.mean(), y - y.mean()
    scale = (x.square().sum() * y.square().sum()).sqrt()
    return (x * y).sum() / scale if scale > 0 else torch.zeros(())


def critic_fit(q: torch.Tensor, v: torch.Tensor, returns: torch.Tensor, mc_advantages: torch.Tensor) -> dict[str, torch.Tensor]:
    """How much the utterance critic knows about the turns the policy just played, measured
    against their Monte Carlo returns (a diagnostic, logged each step; not a training signal).

    On fresh on-policy turns G_k (the discounted return-to-go) is an unbiased sample of
    Q^π(s_k, a_k), and G_k − b_k with the group's leave-one-out baseline b_k
    (:func:`rlhf.algorithms.turns.turn_baseline`) an unbiased, critic-free advantage. A critic
    whose advantages do not correlate with those carries noise, and the policy follows its
    noise at the optimiser's full step size: watch `advantage_corr` before trusting a run.

    Args:
        q, v: [N] the critic's min(Q1, Q2)(s_k, a_k) and V(s_k) of the batch's played turns.
        returns: [N] G_k of the same turns.
        mc_advantages: [N] G_k − b_k.
    Returns:
        `q_explained_var` (Q against G; 1 is perfect, ≤ 0 no better than a constant),
        `v_explained_var` (V against G), `advantage_corr` (Pearson of Q − V with G − b), 0-d.
    """
    _check_transitions(q=q, v=v, returns=returns, mc_advantages=mc_advantages)
    q, v, returns, mc_advantages = q.float(), v.float(), returns.float(), mc_advantages.float()
    return {
        "q_explained_var": explained_variance(q, returns, torch.ones_like(returns)),
        "v_explained_var": explained_variance(v, returns, torch.ones_like(returns)),
        "advantage_corr": _correlation(q - v, mc_advantages),
    }
