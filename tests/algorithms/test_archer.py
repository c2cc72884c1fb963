"""ArCHer's critic math against hand-computed values."""

import pytest
import torch

from rlhf.algorithms.archer import critic_fit, critic_losses, q_targets, soft_update_, utterance_advantages, v_targets


def test_q_targets_bootstrap_unless_the_episode_ended_with_done():
    rewards = torch.tensor([1.0, 0.0, 0.5])
    next_values = torch.tensor([2.0, 3.0, 4.0])
    # turn 0: mid-episode; turn 1: last turn of a done episode; turn 2: last turn of an episode
    # cut by the turn budget (not terminal: it bootstraps)
    terminal = torch.tensor([False, True, False])
    targets = q_targets(rewards, next_values, terminal, gamma=0.9)
    torch.testing.assert_close(targets, torch.tensor([1.0 + 0.9 * 2.0, 0.0, 0.5 + 0.9 * 4.0]))


def test_q_targets_ignore_a_non_finite_value_read_after_a_real_end():
    targets = q_targets(torch.tensor([1.0, 2.0]), torch.tensor([float("nan"), float("inf")]), torch.tensor([True, True]), gamma=0.5)
    torch.testing.assert_close(targets, torch.tensor([1.0, 2.0]))


def test_q_targets_accept_float_terminal_flags_and_reject_mismatched_shapes():
    targets = q_targets(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), gamma=1.0)
    torch.testing.assert_close(targets, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="shapes"):
        q_targets(torch.zeros(2), torch.zeros(3), torch.zeros(2, dtype=torch.bool), gamma=1.0)


def test_v_targets_take_the_smaller_target_q():
    torch.testing.assert_close(v_targets(torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, -1.0, 3.0])), torch.tensor([0.5, -2.0, 3.0]))


def test_critic_losses_by_hand():
    q1, q2, v = torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([0.0, 4.0]), torch.tensor([1.0, 1.0])
    y, v_goal = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 3.0])
    losses = critic_losses(q1, q2, v, y, v_goal)
    # Q1 errors (0, -1), Q2 errors (-1, 1): means 0.5 and 1.0; V errors (1, -2): mean 2.5
    torch.testing.assert_close(losses.q_loss, torch.tensor(1.5))
    torch.testing.assert_close(losses.v_loss, torch.tensor(2.5))
    torch.testing.assert_close(losses.td_error, torch.tensor([-1.0, -1.0]))  # min(Q1, Q2) − y
    losses.q_loss.backward()
    torch.testing.assert_close(q1.grad, torch.tensor([0.0, -1.0]))  # d/dq1 of mean (q1 − y)²


def test_critic_losses_pass_no_gradient_into_the_targets():
    y = torch.tensor([1.0], requires_grad=True)
    losses = critic_losses(torch.zeros(1, requires_grad=True), torch.zeros(1), torch.zeros(1), y, y)
    (losses.q_loss + losses.v_loss).backward()
    assert y.grad is None


def test_soft_update_is_polyak_averaging():
    target = [torch.tensor([0.0, 10.0]), torch.tensor([[1.0]])]
    online = [torch.tensor([1.0, 20.0]), torch.tensor([[3.0]])]
    soft_update_(target, online, tau=0.25)
    torch.testing.assert_close(target[0], torch.tensor([0.25, 12.5]))  # 0.75 · target + 0.25 · online
    torch.testing.assert_close(target[1], torch.tensor([[1.5]]))
    soft_update_(target, online, tau=1.0)
    assert all(torch.equal(t, o) for t, o in zip(target, online))
    frozen = [t.clone() for t in target]
    soft_update_(target, [o * 7 for o in online], tau=0.0)
    assert all(torch.equal(t, f) for t, f in zip(target, frozen))


def test_soft_update_rejects_a_bad_tau_and_mismatched_networks():
    with pytest.raises(ValueError, match="tau"):
        soft_update_([torch.zeros(1)], [torch.zeros(1)], tau=1.5)
    with pytest.raises(ValueError, match="different parameters"):
        soft_update_([torch.zeros(1)], [torch.zeros(2)], tau=0.5)


def test_utterance_advantages_are_q_minus_v_and_carry_no_gradient():
    q = torch.tensor([2.0, 0.0], requires_grad=True)
    advantages = utterance_advantages(q, torch.tensor([0.5, 1.0]))
    torch.testing.assert_close(advantages, torch.tensor([1.5, -1.0]))
    assert not advantages.requires_grad


def test_critic_fit_by_hand():
    returns = torch.tensor([1.0, 0.0, 1.0, 0.0])
    mc_advantages = torch.tensor([0.5, -0.5, 0.5, -0.5])
    perfect = critic_fit(q=returns.clone(), v=torch.full((4,), 0.5), returns=returns, mc_advantages=mc_advantages)
    assert perfect["q_explained_var"] == 1.0 and perfect["v_explained_var"] == pytest.approx(0.0, abs=1e-7)
    assert perfect["advantage_corr"] == pytest.approx(1.0)
    # Q half-way to the returns: residual variance 1/4 of theirs; an advantage of the wrong sign
    half = critic_fit(q=torch.tensor([0.75, 0.25, 0.75, 0.25]), v=torch.tensor([1.0, 0.0, 1.0, 0.0]), returns=returns,
                      mc_advantages=mc_advantages)
    assert half["q_explained_var"] == pytest.approx(0.75) and half["v_explained_var"] == 1.0
    assert half["advantage_corr"] == pytest.approx(-1.0)
    # returns that do not vary, or a constant advantage, explain and correlate nothing
    flat = critic_fit(q=torch.zeros(3), v=torch.zeros(3), returns=torch.ones(3), mc_advantages=torch.zeros(3))
    assert all(float(value) == 0.0 for value in flat.values())
    with pytest.raises(ValueError, match="one length"):
        critic_fit(q=torch.zeros(3), v=torch.zeros(3), returns=torch.zeros(2), mc_advantages=torch.zeros(3))
