"""Loss aggregation modes and the PPO clipped surrogate, checked against hand-computed values."""

import math

import pytest
import torch

from rlhf.algorithms.losses import LOSS_AGG_MODES, aggregate, masked_mean, ppo_policy_loss

LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
# row 0 has 2 valid tokens, row 1 has 1, row 2 has none (left out of the sequence means)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_masked_mean():
    assert masked_mean(LOSS, MASK.float()).item() == pytest.approx(7 / 3)
    assert masked_mean(LOSS, torch.zeros(3, 3)).item() == 0.0


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", (1 + 2 + 4) / 3),
        ("seq-mean-token-sum", (3 + 4) / 2),
        ("seq-mean-token-mean", (1.5 + 4) / 2),
        ("seq-mean-token-sum-norm", (3 / 3 + 4 / 3) / 2),  # divided by R = 3
    ],
)
def test_aggregate_modes_by_hand(mode, expected):
    assert aggregate(LOSS, MASK, mode).item() == pytest.approx(expected)


def test_aggregate_sum_norm_with_explicit_length():
    assert aggregate(LOSS, MASK, "seq-mean-token-sum-norm", norm_length=2).item() == pytest.approx((3 / 2 + 4 / 2) / 2)


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_aggregate_empty_mask_is_zero(mode):
    assert aggregate(LOSS, torch.zeros(3, 3), mode).item() == 0.0


def test_aggregate_unknown_mode_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown loss aggregation 'sum'.*token-mean"):
        aggregate(LOSS, MASK, "sum")


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_aggregate_ignores_extra_masked_columns(mode):
    padded_loss = torch.cat([LOSS, torch.full((3, 4), 123.0)], dim=1)
    padded_mask = torch.cat([MASK, torch.zeros(3, 4, dtype=MASK.dtype)], dim=1)
    assert aggregate(padded_loss, padded_mask, mode).item() == pytest.approx(aggregate(LOSS, MASK, mode).item())
    padded = aggregate(padded_loss, padded_mask, "seq-mean-token-sum-norm", norm_length=3).item()
    assert padded == pytest.approx(aggregate(LOSS, MASK, "seq-mean-token-sum-norm").item())


# ---- ppo_policy_loss ---------------------------------------------------------------------


def test_ratio_one_gives_minus_mean_advantage():
    advantages = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, -1.0]])
    loss, stats = ppo_policy_loss(logprobs, logprobs.clone(), advantages, mask)
    assert loss.item() == pytest.approx(-(1 - 2 + 3 + 0.5) / 4)
    assert stats["clip_frac_high"].item() == 0.0
    assert stats["clip_frac_low"].item() == 0.0
    assert stats["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


def four_tokens():
    """Ratios 2, 0.5, 0.5, 2 against advantages +1, +1, -1, -1 (one row)."""
    log_ratio = torch.tensor([[math.log(2), math.log(0.5), math.log(0.5), math.log(2)]])
    old = torch.full((1, 4), -1.0)
    advantages = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    return old + log_ratio, old, advantages, torch.ones(1, 4)


def test_asymmetric_clipping_by_hand():
    logprobs, old, advantages, mask = four_tokens()
    logprobs.requires_grad_(True)
    loss, stats = ppo_policy_loss(logprobs, old, advantages, mask, clip_low=0.1, clip_high=0.3)
    # token 0: A>0, ratio 2 clipped to 1.3 -> -1.3     token 1: A>0, ratio 0.5 unclipped -> -0.5
    # token 2: A<0, ratio 0.5 clipped to 0.9 -> 0.9    token 3: A<0, ratio 2 unclipped -> 2
    assert loss.item() == pytest.approx((-1.3 - 0.5 + 0.9 + 2.0) / 4)
    assert stats["clip_frac_high"].item() == pytest.approx(0.25)
    assert stats["clip_frac_low"].item() == pytest.approx(0.25)
    loss.backward()
    # d(-A * ratio)/d logprob = -A * ratio on unclipped tokens, 0 on clipped ones; /4 for the mean
    assert logprobs.grad[0].tolist() == pytest.approx([0.0, -0.5 / 4, 0.0, 2.0 / 4])


def test_symmetric_default_range():
    logprobs, old, advantages, mask = four_tokens()
    loss, _ = ppo_policy_loss(logprobs, old, advantages, mask)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 0.8 + 2.0) / 4)


def test_dual_clip_bounds_negative_advantage_loss():
    # ratio 5 with A = -1: PPO loss 5, dual clip c = 3 bounds it to -c*A = 3.
    # ratio 2 with A = -1: loss 2 < 3, unchanged. ratio 5 with A = +1: -1.2, unaffected.
    log_ratio = torch.tensor([[math.log(5), math.log(2), math.log(5)]])
    advantages = torch.tensor([[-1.0, -1.0, 1.0]])
    old = torch.zeros(1, 3)
    mask = torch.ones(1, 3)
    plain, _ = ppo_policy_loss(old + log_ratio, old, advantages, mask)
    bounded, _ = ppo_policy_loss(old + log_ratio, old, advantages, mask, dual_clip=3.0)
    assert plain.item() == pytest.approx((5 + 2 - 1.2) / 3)
    assert bounded.item() == pytest.approx((3 + 2 - 1.2) / 3)


def test_clip_fractions_count_only_valid_tokens():
    logprobs, old, advantages, _ = four_tokens()
    mask = torch.tensor([[1, 1, 0, 0]])  # only the ratio-2 (clipped high) and ratio-0.5 tokens
    _, stats = ppo_policy_loss(logprobs, old, advantages, mask)
    assert stats["clip_frac_high"].item() == pytest.approx(0.5)
    assert stats["clip_frac_low"].item() == 0.0


def test_approx_kl_by_hand_and_nonnegative():
    logprobs, old, advantages, mask = four_tokens()
    _, stats = ppo_policy_loss(logprobs, old, advantages, mask)
    # ratio - 1 - log ratio: 2 - 1 - ln2 (twice) and 0.5 - 1 + ln2 (twice)
    expected = ((1 - math.log(2)) * 2 + (-0.5 + math.log(2)) * 2) / 4
    assert stats["approx_kl"].item() == pytest.approx(expected, rel=1e-5)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        logprobs = torch.randn(4, 6, generator=generator) * 3
        _, stats = ppo_policy_loss(logprobs, torch.randn(4, 6, generator=generator), torch.randn(4, 6, generator=generator), torch.ones(4, 6))
        assert stats["approx_kl"].item() >= 0.0


def test_extreme_log_ratio_stays_finite():
    logprobs = torch.tensor([[0.0, -100.0]])
    old = torch.tensor([[-100.0, 0.0]])
    loss, stats = ppo_policy_loss(logprobs, old, torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())


def test_stats_are_detached():
    logprobs, old, advantages, mask = four_tokens()
    _, stats = ppo_policy_loss(logprobs.requires_grad_(True), old, advantages, mask)
    assert not any(v.requires_grad for v in stats.values())


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_padding_invariance(agg):
    generator = torch.Generator().manual_seed(1)
    logprobs = -torch.rand(3, 4, generator=generator) * 2
    old = -torch.rand(3, 4, generator=generator) * 2
    advantages = torch.randn(3, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])

    def pad(x, value):
        return torch.cat([x, torch.full((3, 5), value, dtype=x.dtype)], dim=1)

    loss, stats = ppo_policy_loss(logprobs, old, advantages, mask, clip_low=0.1, clip_high=0.3, dual_clip=2.0, agg=agg)
    padded_loss, padded_stats = ppo_policy_loss(
        pad(logprobs, -7.0), pad(old, 3.0), pad(advantages, 9.0), pad(mask, 0),
        clip_low=0.1, clip_high=0.3, dual_clip=2.0, agg=agg,
    )
    assert padded_loss.item() == pytest.approx(loss.item(), rel=1e-6)
    for key in stats:
        assert padded_stats[key].item() == pytest.approx(stats[key].item(), rel=1e-6, abs=1e-8), key
