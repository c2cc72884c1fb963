"""GSPO's sequence-level clipped surrogate, and the policy-loss registry."""

import math

import pytest
import torch

from rlhf.algorithms.losses import POLICY_LOSSES, get_policy_loss, gspo_policy_loss, ppo_policy_loss

ADVANTAGES = torch.tensor([[1.0, -2.0, 3.0], [0.5, 4.0, 0.0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
LOGPROBS = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, -1.0]])


def test_ratio_one_gives_minus_aggregated_advantage():
    loss, stats = gspo_policy_loss(LOGPROBS, LOGPROBS.clone(), ADVANTAGES, MASK)
    # seq-mean-token-mean: row means (1 - 2 + 3)/3 and 0.5, then their mean
    assert loss.item() == pytest.approx(-((2 / 3) + 0.5) / 2)
    token_mean, _ = gspo_policy_loss(LOGPROBS, LOGPROBS.clone(), ADVANTAGES, MASK, agg="token-mean")
    assert token_mean.item() == pytest.approx(-(1 - 2 + 3 + 0.5) / 4)
    assert stats["clip_frac_high"].item() == 0.0
    assert stats["clip_frac_low"].item() == 0.0
    assert stats["approx_kl"].item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_at_ratio_one_matches_ppo():
    generator = torch.Generator().manual_seed(0)
    logprobs = -torch.rand(3, 5, generator=generator)
    advantages = torch.randn(3, 5, generator=generator)  # per-token advantages (GSPO-token)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    grads = []
    for loss_fn in (gspo_policy_loss, ppo_policy_loss):
        x = logprobs.clone().requires_grad_(True)
        loss_fn(x, logprobs, advantages, mask, agg="seq-mean-token-mean")[0].backward()
        grads.append(x.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    # both: dL/dlp_t = -A_t / (|y_i| · B) on valid tokens
    lengths = mask.sum(dim=-1, keepdim=True)
    assert torch.allclose(grads[0], -advantages * mask / (lengths * 3), atol=1e-7)


def two_by_three():
    """Sequence log-ratios: row 0 mean(0.3, -0.1, 0.1) = 0.1; row 1 mean(0.2, -0.8) = -0.3
    (its third token is padding, log-ratio 5 must not count)."""
    old = torch.tensor([[-1.0, -2.0, -0.5], [-0.7, -1.2, -2.0]])
    log_ratio = torch.tensor([[0.3, -0.1, 0.1], [0.2, -0.8, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    return old + log_ratio, old, mask


def test_sequence_ratio_by_hand():
    logprobs, old, mask = two_by_three()
    ones = torch.ones(2, 3)
    # a clip range wide enough to never bind: loss = -mean_i s_i
    loss, _ = gspo_policy_loss(logprobs, old, ones, mask, clip_low=0.9, clip_high=9.0)
    assert loss.item() == pytest.approx(-(math.exp(0.1) + math.exp(-0.3)) / 2, rel=1e-6)


def test_clipping_by_hand():
    logprobs, old, mask = two_by_three()
    logprobs.requires_grad_(True)
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    loss, stats = gspo_policy_loss(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.2)
    # row 0: s = e^0.1 = 1.10517, inside [0.8, 1.2] -> token losses -1.10517
    # row 1: s = e^-0.3 = 0.74082 < 0.8 with A = -1 -> max(0.74082, 0.8) = 0.8, clipped
    assert loss.item() == pytest.approx((-math.exp(0.1) + 0.8) / 2, rel=1e-6)
    assert stats["clip_frac_low"].item() == pytest.approx(2 / 5)  # row 1's two valid tokens
    assert stats["clip_frac_high"].item() == 0.0
    loss.backward()
    # row 0: d(-A s_{i,t})/dlp_t = -s_0, / 3 tokens / 2 sequences; row 1: clipped, no gradient
    expected = torch.tensor([[-math.exp(0.1) / 6] * 3, [0.0, 0.0, 0.0]])
    assert torch.allclose(logprobs.grad, expected, atol=1e-6)


def test_clipping_is_per_sequence_not_per_token():
    old = torch.zeros(2, 3)
    # row 0: token ratios e^0.5, e^-0.5, 1 (PPO would clip token 0), sequence ratio 1
    # row 1: every token ratio e^0.3, sequence ratio e^0.3 = 1.35 > 1.2 -> all three clipped
    log_ratio = torch.tensor([[0.5, -0.5, 0.0], [0.3, 0.3, 0.3]])
    logprobs = (old + log_ratio).requires_grad_(True)
    advantages = torch.ones(2, 3)
    mask = torch.ones(2, 3)
    loss, stats = gspo_policy_loss(logprobs, old, advantages, mask, clip_low=0.2, clip_high=0.2)
    assert loss.item() == pytest.approx((-1.0 - 1.2) / 2)
    assert stats["clip_frac_high"].item() == pytest.approx(3 / 6)
    loss.backward()
    assert torch.allclose(logprobs.grad, torch.tensor([[-1 / 6] * 3, [0.0] * 3]), atol=1e-7)
    _, ppo_stats = ppo_policy_loss(logprobs, old, advantages, mask)
    assert ppo_stats["clip_frac_high"].item() == pytest.approx(4 / 6)  # token 0 and all of row 1


def test_default_ranges_are_the_papers():
    old = torch.zeros(1, 2)
    advantages = torch.ones(1, 2)
    inside, inside_stats = gspo_policy_loss(old + 3.5e-4, old, advantages, torch.ones(1, 2))
    outside, outside_stats = gspo_policy_loss(old + 4.5e-4, old, advantages, torch.ones(1, 2))
    assert inside.item() == pytest.approx(-math.exp(3.5e-4), rel=1e-6)
    assert inside_stats["clip_frac_high"].item() == 0.0
    assert outside.item() == pytest.approx(-(1 + 4e-4), rel=1e-6)
    assert outside_stats["clip_frac_high"].item() == 1.0
    low, low_stats = gspo_policy_loss(old - 3.5e-4, old, -advantages, torch.ones(1, 2))
    assert low.item() == pytest.approx(1 - 3e-4, rel=1e-6)  # max(e^-3.5e-4, 1 - 3e-4) · 1
    assert low_stats["clip_frac_low"].item() == 1.0


def test_dual_clip_bounds_negative_advantage_loss():
    # sequence ratio 5 with A = -1: loss 5, bounded by -c·A = 3 with c = 3
    old = torch.zeros(1, 2)
    logprobs = old + math.log(5)
    advantages = -torch.ones(1, 2)
    plain, _ = gspo_policy_loss(logprobs, old, advantages, torch.ones(1, 2))
    bounded, _ = gspo_policy_loss(logprobs, old, advantages, torch.ones(1, 2), dual_clip=3.0)
    assert plain.item() == pytest.approx(5.0, rel=1e-6)
    assert bounded.item() == pytest.approx(3.0)


def test_approx_kl_matches_ppo():
    generator = torch.Generator().manual_seed(3)
    logprobs, old, advantages = (torch.randn(3, 4, generator=generator) for _ in range(3))
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    _, stats = gspo_policy_loss(logprobs, old, advantages, mask)
    _, ppo_stats = ppo_policy_loss(logprobs, old, advantages, mask)
    assert stats["approx_kl"].item() == pytest.approx(ppo_stats["approx_kl"].item(), rel=1e-6)


def test_extreme_ratios_stay_finite_and_stats_detached():
    logprobs = torch.tensor([[0.0, 0.0], [-200.0, -200.0]], requires_grad=True)
    old = torch.tensor([[-200.0, -200.0], [0.0, 0.0]])
    loss, stats = gspo_policy_loss(logprobs, old, torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), torch.ones(2, 2))
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in stats.values())
    assert not any(v.requires_grad for v in stats.values())


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_padding_invariance(agg):
    generator = torch.Generator().manual_seed(1)
    logprobs = -torch.rand(3, 4, generator=generator) * 0.1
    old = -torch.rand(3, 4, generator=generator) * 0.1
    advantages = torch.randn(3, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])

    def pad(x, value):
        return torch.cat([x, torch.full((3, 5), value, dtype=x.dtype)], dim=1)

    kwargs = dict(clip_low=0.01, clip_high=0.02, dual_clip=2.0, agg=agg)
    loss, stats = gspo_policy_loss(logprobs, old, advantages, mask, **kwargs)
    padded, padded_stats = gspo_policy_loss(pad(logprobs, -7.0), pad(old, 3.0), pad(advantages, 9.0), pad(mask, 0), **kwargs)
    assert padded.item() == pytest.approx(loss.item(), rel=1e-6)
    for key in stats:
        assert padded_stats[key].item() == pytest.approx(stats[key].item(), rel=1e-6, abs=1e-8), key


# ---- registry ----------------------------------------------------------------------------


def test_registry():
    assert get_policy_loss("ppo") is ppo_policy_loss
    assert get_policy_loss("gspo") is gspo_policy_loss
    assert set(POLICY_LOSSES) == {"ppo", "gspo"}
    with pytest.raises(KeyError, match="unknown policy loss 'grpo'; valid: gspo, ppo"):
        get_policy_loss("grpo")


@pytest.mark.parametrize("name", ["ppo", "gspo"])
def test_registered_losses_share_a_signature(name):
    logprobs = -torch.rand(2, 3)
    loss, stats = get_policy_loss(name)(
        logprobs, logprobs + 0.01, torch.randn(2, 3), torch.ones(2, 3),
        clip_low=0.2, clip_high=0.3, dual_clip=3.0, agg="seq-mean-token-sum-norm", norm_length=4,
    )
    assert loss.shape == ()
    assert set(stats) == {"clip_frac_high", "clip_frac_low", "approx_kl"}
