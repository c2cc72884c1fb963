"""Token-level recursions (return-to-go, GAE), masked whitening, and the estimators built on
them (REINFORCE++, ReMax): hand-computed values and naive per-sequence reference loops."""

import math
import statistics

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rlhf.algorithms.advantages import discounted_returns, gae, reinforce_pp, remax, whiten

# ---- naive references: one sequence at a time, plain Python floats ------------------------


def loop_discounted_returns(rewards: list[float], mask: list[int], gamma: float) -> list[float]:
    """G_t = r_t + gamma G_{t+1} over the valid tokens only (holes removed), scattered back."""
    out, running = [0.0] * len(rewards), 0.0
    for t in reversed([t for t, m in enumerate(mask) if m]):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def loop_gae(rewards: list[float], values: list[float], mask: list[int], gamma: float, lam: float) -> list[float]:
    """Textbook GAE on the valid tokens only (padding removed), scattered back to their columns."""
    valid = [t for t, m in enumerate(mask) if m]
    out, next_value, next_advantage = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(valid):
        delta = rewards[t] + gamma * next_value - values[t]
        next_advantage = delta + gamma * lam * next_advantage
        next_value = values[t]
        out[t] = next_advantage
    return out


def loop_whiten(x: list[list[float]], mask: list[list[int]]) -> list[list[float]]:
    """Whiten with the statistics module over the valid entries (unbiased variance)."""
    valid = [v for row, mrow in zip(x, mask) for v, m in zip(row, mrow) if m]
    mean = statistics.fmean(valid) if valid else 0.0
    var = statistics.variance(valid) if len(valid) > 1 else 1.0
    return [[(v - mean) / math.sqrt(var + 1e-8) if m else 0.0 for v, m in zip(row, mrow)] for row, mrow in zip(x, mask)]


# ---- random batches -----------------------------------------------------------------------


@st.composite
def token_batches(draw):
    """(token_rewards [B, R], values [B, R], response_mask [B, R], gamma, lam); masks either
    right-padded or arbitrary 0/1 (holes in the middle)."""
    batch, length = draw(st.integers(1, 6)), draw(st.integers(1, 7))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):
        lengths = torch.randint(0, length + 1, (batch,), generator=generator)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    else:
        mask = (torch.rand(batch, length, generator=generator) < 0.7).float()
    rewards = torch.randn(batch, length, generator=generator)
    values = torch.randn(batch, length, generator=generator)
    gamma = draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    lam = draw(st.sampled_from([0.0, 0.5, 0.95, 1.0]))
    return rewards, values, mask, gamma, lam


def masked_rows(tensor: torch.Tensor, mask: torch.Tensor) -> tuple[list[list[float]], list[list[int]]]:
    return tensor.tolist(), mask.int().tolist()


# ---- discounted_returns -------------------------------------------------------------------


def test_discounted_returns_by_hand():
    # gamma 0.5, right-padded: G_1 = 2, G_0 = 1 + 0.5 * 2 = 2, the padded 3 is dropped
    returns = discounted_returns(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1, 1, 0]]), 0.5)
    assert returns.tolist() == [[2.0, 2.0, 0.0]]
    # a hole (an observation between two actions) is skipped: G_3 = 4, G_2 = 0 (masked),
    # G_1 = 2 + 0.5 * 4 = 4, G_0 = 1 + 0.5 * 4 = 3
    returns = discounted_returns(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[1, 1, 0, 1]]), 0.5)
    assert returns.tolist() == [[3.0, 4.0, 0.0, 4.0]]
    assert returns.dtype == torch.float32


def test_discounted_returns_outcome_reward_with_gamma_one_is_the_score_everywhere():
    rewards = torch.tensor([[0.0, 0.0, 0.7], [0.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert torch.allclose(discounted_returns(rewards, mask, 1.0), torch.tensor([[0.7, 0.7, 0.7], [1.0, 1.0, 0.0]]))


@settings(max_examples=50, deadline=None)
@given(token_batches())
def test_discounted_returns_match_loop(batch):
    rewards, _, mask, gamma, _ = batch
    expected = [loop_discounted_returns(r, m, gamma) for r, m in zip(*masked_rows(rewards, mask))]
    assert discounted_returns(rewards, mask, gamma).tolist() == [pytest.approx(row, abs=1e-5) for row in expected]


# ---- gae ----------------------------------------------------------------------------------


def test_gae_by_hand():
    # gamma = lam = 0.5, r = [0, 0, 1], V = [0.5, 0.25, 0.5]
    # t=2: delta = 1 + 0 - 0.5 = 0.5                 A_2 = 0.5
    # t=1: delta = 0 + 0.5 * 0.5 - 0.25 = 0          A_1 = 0 + 0.25 * 0.5 = 0.125
    # t=0: delta = 0 + 0.5 * 0.25 - 0.5 = -0.375     A_0 = -0.375 + 0.25 * 0.125 = -0.34375
    # returns = A + V = [0.15625, 0.375, 1.0]
    advantages, returns = gae(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([[0.5, 0.25, 0.5]]), torch.ones(1, 3), 0.5, 0.5)
    assert advantages.tolist() == [[-0.34375, 0.125, 0.5]]
    assert returns.tolist() == [[0.15625, 0.375, 1.0]]


def test_gae_skips_a_hole_in_the_mask():
    # the masked middle token (r = V = 100) is skipped: same as r = [0, 1], V = [0.5, 0.5]
    # t=2: A = 1 - 0.5 = 0.5;  t=0: delta = 0 + 0.5 * 0.5 - 0.5 = -0.25, A = -0.25 + 0.25 * 0.5 = -0.125
    rewards, values = torch.tensor([[0.0, 100.0, 1.0]]), torch.tensor([[0.5, 100.0, 0.5]])
    advantages, returns = gae(rewards, values, torch.tensor([[1, 0, 1]]), 0.5, 0.5)
    assert advantages.tolist() == [[-0.125, 0.0, 0.5]]
    assert returns.tolist() == [[0.375, 0.0, 1.0]]


def test_gae_with_lambda_one_is_return_to_go_minus_value():
    # lam = 1 telescopes: A_t = sum gamma^k r_{t+k} - V_t (right-padded masks)
    rewards, values = torch.tensor([[0.3, -1.0, 2.0, 9.0]]), torch.tensor([[0.1, 0.2, -0.4, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, 0.9, 1.0)
    expected_returns = discounted_returns(rewards, mask, 0.9)
    assert torch.allclose(advantages, (expected_returns - values) * mask, atol=1e-6)
    assert torch.allclose(returns, expected_returns, atol=1e-6)


def test_gae_with_lambda_zero_is_the_td_error():
    rewards, values = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, 1.5]])
    advantages, _ = gae(rewards, values, torch.ones(1, 2), 0.9, 0.0)
    # A_0 = 1 + 0.9 * 1.5 - 0.5 = 1.85, A_1 = 2 + 0 - 1.5 = 0.5
    assert advantages.tolist() == [pytest.approx([1.85, 0.5])]


@settings(max_examples=50, deadline=None)
@given(token_batches())
def test_gae_matches_loop(batch):
    rewards, values, mask, gamma, lam = batch
    rows = zip(rewards.tolist(), values.tolist(), mask.int().tolist())
    expected = [loop_gae(r, v, m, gamma, lam) for r, v, m in rows]
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert advantages.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]
    assert torch.allclose(returns, (advantages + values) * mask, atol=1e-6)


def test_non_finite_values_under_the_mask_do_not_leak():
    nan = float("nan")
    rewards, values = torch.tensor([[1.0, nan, 1.0]]), torch.tensor([[0.0, nan, 0.0]])
    mask = torch.tensor([[1, 0, 1]])
    advantages, returns = gae(rewards, values, mask, 1.0, 1.0)
    assert advantages.tolist() == [[2.0, 0.0, 1.0]] and returns.tolist() == [[2.0, 0.0, 1.0]]
    assert discounted_returns(rewards, mask, 1.0).tolist() == [[2.0, 0.0, 1.0]]
    assert whiten(rewards, mask)[mask.bool()].isfinite().all()


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="values has shape"):
        gae(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3), 1.0, 1.0)


# ---- whiten -------------------------------------------------------------------------------


def test_whiten_by_hand():
    # valid {1, 2, 3}: mean 2, unbiased var (1 + 0 + 1) / 2 = 1; the masked 100 is ignored
    x, mask = torch.tensor([[1.0, 2.0], [3.0, 100.0]]), torch.tensor([[1, 1], [1, 0]])
    scale = 1 / math.sqrt(1 + 1e-8)
    assert whiten(x, mask)[mask.bool()].tolist() == pytest.approx([-scale, 0.0, scale])
    assert whiten(x, mask, shift_mean=False)[mask.bool()].tolist() == pytest.approx([2 - scale, 2.0, 2 + scale])


def test_whiten_guards_fewer_than_two_entries():
    # one valid entry: variance undefined -> scale 1, only centred; none: x unchanged
    x = torch.tensor([[5.0, 7.0]])
    assert whiten(x, torch.tensor([[1, 0]])).tolist() == [[0.0, 2.0]]
    assert whiten(x, torch.tensor([[0, 0]])).tolist() == [[5.0, 7.0]]
    assert whiten(x, torch.tensor([[1, 0]]), shift_mean=False).tolist() == [[5.0, 7.0]]


@settings(max_examples=50, deadline=None)
@given(token_batches())
@example((torch.tensor([[-1.3477, -0.3419, 0.7278, 1.8526, 0.7288]]), torch.zeros(1, 5), torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0]]), 0.0, 0.0))
def test_whiten_mean_zero_unit_variance(batch):
    x, _, mask, _, _ = batch
    x = 3.0 * x + 2.0
    valid = mask.bool()
    if valid.sum() < 2:
        return
    whitened = whiten(x, mask)[valid].double()
    expected = loop_whiten(*masked_rows(x, mask))
    # x is float32: rounding it costs up to eps * |x| per entry, which whitening divides by the std
    rounding = 8 * torch.finfo(torch.float32).eps * x[valid].abs().max().item() / max(x[valid].double().std().item(), 1e-4)
    assert whiten(x, mask).masked_fill(~valid, 0.0).tolist() == [pytest.approx(row, abs=1e-4 + rounding) for row in expected]
    assert whitened.mean().item() == pytest.approx(0.0, abs=1e-5 + rounding)
    if x[valid].var() > 1e-3:
        assert whitened.var(unbiased=True).item() == pytest.approx(1.0, rel=1e-3)
    kept = whiten(x, mask, shift_mean=False)[valid].double()
    assert kept.mean().item() == pytest.approx(x[valid].double().mean().item(), abs=1e-4 + rounding)


# ---- reinforce_pp -------------------------------------------------------------------------


def test_reinforce_pp_by_hand():
    # gamma 0.5: row 0 G = [0 + 0.5 * 2, 2] = [1, 2]; row 1 G = [0, masked]; the masked 5 is dropped
    # valid G {1, 2, 0}: mean 1, unbiased var 1 -> advantages [[0, 1], [-1, 0]]
    rewards, mask = torch.tensor([[0.0, 2.0], [0.0, 5.0]]), torch.tensor([[1, 1], [1, 0]])
    advantages, returns = reinforce_pp(rewards, mask, 0.5)
    assert returns.tolist() == [[1.0, 2.0], [0.0, 0.0]]
    assert advantages.tolist() == [pytest.approx([0.0, 1.0]), pytest.approx([-1.0, 0.0])]


@settings(max_examples=50, deadline=None)
@given(token_batches())
def test_reinforce_pp_matches_loop(batch):
    rewards, _, mask, gamma, _ = batch
    rows, mask_rows = masked_rows(rewards, mask)
    returns_to_go = [loop_discounted_returns(r, m, gamma) for r, m in zip(rows, mask_rows)]
    advantages, returns = reinforce_pp(rewards, mask, gamma)
    assert returns.tolist() == [pytest.approx(row, abs=1e-5) for row in returns_to_go]
    expected = loop_whiten(returns_to_go, mask_rows)
    assert advantages.tolist() == [pytest.approx(row, rel=1e-3, abs=1e-3) for row in expected]


# ---- remax --------------------------------------------------------------------------------


def test_remax_by_hand():
    # G row 0 = [0.1 + 0 + 1, 0 + 1, 1] = [1.1, 1, 1], minus greedy 0.5 -> [0.6, 0.5, 0.5]
    # G row 1 = [0 + 2, 2, masked] = [2, 2, 0],         minus greedy 1   -> [1, 1, 0]
    rewards = torch.tensor([[0.1, 0.0, 1.0], [0.0, 2.0, 7.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    advantages, returns = remax(rewards, torch.tensor([0.5, 1.0]), mask)
    assert returns.tolist() == [pytest.approx([1.1, 1.0, 1.0]), [2.0, 2.0, 0.0]]
    assert advantages.tolist() == [pytest.approx([0.6, 0.5, 0.5]), [1.0, 1.0, 0.0]]


@settings(max_examples=50, deadline=None)
@given(token_batches())
def test_remax_matches_loop(batch):
    rewards, baseline_rows, mask, _, _ = batch
    baseline = baseline_rows[:, 0]
    rows, mask_rows = masked_rows(rewards, mask)
    expected = [
        [g - b if m else 0.0 for g, m in zip(loop_discounted_returns(r, ms, 1.0), ms)]
        for r, ms, b in zip(rows, mask_rows, baseline.tolist())
    ]
    advantages, _ = remax(rewards, baseline, mask)
    assert advantages.tolist() == [pytest.approx(row, abs=1e-5) for row in expected]
