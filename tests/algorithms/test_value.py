"""Critic losses: clipped squared error and the HL-Gauss classification critic."""

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.value import hl_gauss_bin_centers, hl_gauss_loss, hl_gauss_targets, hl_gauss_value, value_loss

# ---- value_loss --------------------------------------------------------------------------

VALUES = torch.tensor([[1.0, 2.0, 3.0], [0.0, 5.0, -1.0]])
OLD_VALUES = torch.tensor([[0.5, 2.5, 3.0], [1.0, 0.0, 0.0]])
RETURNS = torch.tensor([[2.0, 0.0, 3.0], [0.0, 1.0, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the last token (error 100) does not count


def test_value_loss_without_clip_by_hand():
    loss, stats = value_loss(VALUES, OLD_VALUES, RETURNS, MASK)
    # squared errors 1, 4, 0, 0, 16 over 5 valid tokens: 0.5 * 21 / 5
    assert loss.item() == pytest.approx(0.5 * 21 / 5)
    assert stats["clip_frac"].item() == 0.0
    assert stats["value_mean"].item() == pytest.approx((1 + 2 + 3 + 0 + 5) / 5)


def test_value_loss_clip_picks_the_larger_error_by_hand():
    values = VALUES.clone().requires_grad_(True)
    loss, stats = value_loss(values, OLD_VALUES, RETURNS, MASK, clip=0.2)
    # token  v   old  v_clip  (v-R)^2  (v_clip-R)^2  larger
    # (0,0)  1   0.5  0.7     1        1.69          clipped
    # (0,1)  2   2.5  2.3     4        5.29          clipped
    # (0,2)  3   3.0  3.0     0        0             tie (not counted as clipped)
    # (1,0)  0   1.0  0.8     0        0.64          clipped
    # (1,1)  5   0.0  0.2     16       0.64          unclipped
    assert loss.item() == pytest.approx(0.5 * (1.69 + 5.29 + 0 + 0.64 + 16) / 5)
    assert stats["clip_frac"].item() == pytest.approx(3 / 5)
    loss.backward()
    # where the clipped error wins, v is outside old ± clip and the clamp cuts the gradient;
    # at (1,1): d/dv 0.5 (v - R)^2 / 5 = (5 - 1) / 5
    assert torch.allclose(values.grad, torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.8, 0.0]]))


def test_value_loss_clipped_never_below_unclipped():
    generator = torch.Generator().manual_seed(0)
    values, old, returns = (torch.randn(4, 7, generator=generator) for _ in range(3))
    mask = torch.ones(4, 7)
    plain, _ = value_loss(values, old, returns, mask)
    clipped, _ = value_loss(values, old, returns, mask, clip=0.1)
    assert clipped.item() >= plain.item()


def test_value_loss_without_clip_is_half_mse():
    generator = torch.Generator().manual_seed(1)
    values, old, returns = (torch.randn(3, 5, generator=generator) for _ in range(3))
    loss, _ = value_loss(values, old, returns, torch.ones(3, 5))
    assert loss.item() == pytest.approx(0.5 * torch.nn.functional.mse_loss(values, returns).item())


def test_value_loss_ignores_masked_tokens():
    garbage = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1e4]])  # only at the masked token
    loss, stats = value_loss(VALUES + garbage, OLD_VALUES - garbage, RETURNS + garbage, MASK, clip=0.2)
    reference, reference_stats = value_loss(VALUES, OLD_VALUES, RETURNS, MASK, clip=0.2)
    assert loss.item() == pytest.approx(reference.item())
    for key in stats:
        assert stats[key].item() == pytest.approx(reference_stats[key].item()), key


def test_value_loss_stats_are_detached():
    _, stats = value_loss(VALUES.clone().requires_grad_(True), OLD_VALUES, RETURNS, MASK, clip=0.2)
    assert not any(v.requires_grad for v in stats.values())


def pad(x, value, width=4):
    return torch.cat([x, torch.full((x.shape[0], width) + tuple(x.shape[2:]), value, dtype=x.dtype)], dim=1)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_value_loss_padding_invariance(agg):
    loss, stats = value_loss(VALUES, OLD_VALUES, RETURNS, MASK, clip=0.2, agg=agg)
    padded, padded_stats = value_loss(pad(VALUES, 7.0), pad(OLD_VALUES, -3.0), pad(RETURNS, 50.0), pad(MASK, 0), clip=0.2, agg=agg)
    assert padded.item() == pytest.approx(loss.item(), rel=1e-6)
    for key in stats:
        assert padded_stats[key].item() == pytest.approx(stats[key].item(), rel=1e-6), key


# ---- HL-Gauss ----------------------------------------------------------------------------


def test_bin_centers_by_hand():
    assert hl_gauss_bin_centers(0.0, 4.0, 4).tolist() == pytest.approx([0.5, 1.5, 2.5, 3.5])
    assert hl_gauss_bin_centers(-1.0, 1.0, 4).tolist() == pytest.approx([-0.75, -0.25, 0.25, 0.75])
    assert hl_gauss_bin_centers(-1.0, 1.0, 1).tolist() == pytest.approx([0.0])
    assert hl_gauss_bin_centers(0.0, 1.0, 3, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(("v_min", "v_max", "num_bins"), [(1.0, 1.0, 4), (2.0, 1.0, 4), (0.0, 1.0, 0)])
def test_invalid_support_is_rejected(v_min, v_max, num_bins):
    with pytest.raises(ValueError, match="HL-Gauss"):
        hl_gauss_bin_centers(v_min, v_max, num_bins)


def std_normal_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_targets_by_hand_at_the_centre():
    # support [0, 4], 4 bins of width 1, σ = 0.75; y = 2 sits on the middle edge.
    # Φ((e - 2)/0.75) at edges 0..4 = Φ(-8/3), Φ(-4/3), Φ(0), Φ(4/3), Φ(8/3)
    cdf = [std_normal_cdf((edge - 2) / 0.75) for edge in range(5)]
    mass = [cdf[k + 1] - cdf[k] for k in range(4)]  # ≈ 0.0874, 0.4088, 0.4088, 0.0874
    expected = [m / (cdf[4] - cdf[0]) for m in mass]  # renormalised over the support
    targets = hl_gauss_targets(torch.tensor(2.0), 0.0, 4.0, 4)
    assert targets.shape == (4,)
    assert targets.tolist() == pytest.approx(expected, rel=1e-5)
    assert expected[1] == pytest.approx(0.4088 / 0.9923, rel=1e-3)


def test_targets_with_narrow_sigma_are_one_hot_and_clamped():
    # σ much smaller than a bin: all mass in the bin that holds y; y outside the support is
    # clamped to the edge, where half a Gaussian falls in the last bin and is renormalised to 1.
    y = torch.tensor([[1.3, -5.0, 10.0]])
    targets = hl_gauss_targets(y, 0.0, 4.0, 4, sigma=1e-3)
    assert targets.shape == (1, 3, 4)
    expected = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert torch.allclose(targets[0], expected, atol=1e-6)


def test_targets_have_no_gradient_and_reject_bad_sigma():
    y = torch.tensor([1.0], requires_grad=True)
    assert not hl_gauss_targets(y, 0.0, 4.0, 4).requires_grad
    with pytest.raises(ValueError, match="sigma"):
        hl_gauss_targets(y, 0.0, 4.0, 4, sigma=0.0)


supports = st.tuples(
    st.floats(-10.0, 10.0),  # v_min
    st.floats(0.1, 20.0),  # support width
    st.integers(1, 64),  # num_bins
)
scalar_targets = st.lists(st.floats(-50.0, 50.0), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(supports, scalar_targets, st.floats(0.05, 3.0))
def test_targets_are_distributions(support, ys, sigma_ratio):
    v_min, width, num_bins = support
    v_max = v_min + width
    sigma = sigma_ratio * width / num_bins
    targets = hl_gauss_targets(torch.tensor(ys), v_min, v_max, num_bins, sigma=sigma)
    assert targets.shape == (len(ys), num_bins)
    assert (targets >= -1e-6).all()
    assert torch.allclose(targets.sum(dim=-1), torch.ones(len(ys)), atol=1e-4)


@settings(max_examples=50, deadline=None)
@given(supports, scalar_targets)
def test_targets_recover_the_clamped_scalar(support, ys):
    v_min, width, num_bins = support
    v_max = v_min + width
    bin_width = width / num_bins
    y = torch.tensor(ys, dtype=torch.float64)
    targets = hl_gauss_targets(y, v_min, v_max, num_bins)
    clamped = y.clamp(v_min, v_max)
    centers = hl_gauss_bin_centers(v_min, v_max, num_bins, dtype=torch.float64)
    # expected value under the target distribution: within one bin width of the clamped scalar
    assert ((targets @ centers - clamped).abs() <= bin_width + 1e-9).all()
    # the most likely bin is the one that holds the clamped scalar (either one on an edge)
    edges = torch.linspace(v_min, v_max, num_bins + 1, dtype=torch.float64)
    best = targets.argmax(dim=-1)
    tolerance = 1e-6 * bin_width
    assert ((edges[best] - tolerance <= clamped) & (clamped <= edges[best + 1] + tolerance)).all()


def test_value_by_hand():
    # centres 0.5, 1.5, 2.5, 3.5; uniform -> 2; softmax([0, ln 3, 0, 0]) = 1/6, 3/6, 1/6, 1/6
    assert hl_gauss_value(torch.zeros(4), 0.0, 4.0).item() == pytest.approx(2.0)
    logits = torch.tensor([0.0, math.log(3.0), 0.0, 0.0])
    assert hl_gauss_value(logits, 0.0, 4.0).item() == pytest.approx((0.5 + 1.5 * 3 + 2.5 + 3.5) / 6)


@pytest.mark.parametrize("k", range(5))
def test_value_of_one_hot_logits_is_the_bin_centre(k):
    logits = torch.zeros(2, 3, 5)
    logits[..., k] = 50.0
    values = hl_gauss_value(logits, -1.0, 1.0)
    assert values.shape == (2, 3)
    assert torch.allclose(values, torch.full((2, 3), -1.0 + 0.2 + 0.4 * k), atol=1e-5)


def test_hl_gauss_loss_by_hand():
    # uniform logits: log softmax = -ln K for every bin, so CE = ln K whatever the target
    logits = torch.zeros(2, 3, 8)
    returns = torch.tensor([[0.3, 1.9, -4.0], [2.5, 0.0, 100.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    loss, stats = hl_gauss_loss(logits, returns, mask, 0.0, 4.0)
    assert loss.item() == pytest.approx(math.log(8))
    assert stats["value_mean"].item() == pytest.approx(2.0)
    assert stats["clip_frac"].item() == 0.0


def test_hl_gauss_loss_is_smallest_at_the_target():
    # CE(p, q) >= H(p), with equality when softmax(logits) = p (Gibbs' inequality)
    returns = torch.tensor([[0.7, 3.1]])
    mask = torch.ones(1, 2)
    targets = hl_gauss_targets(returns, 0.0, 4.0, 6)
    at_target, _ = hl_gauss_loss(targets.log(), returns, mask, 0.0, 4.0)
    entropy = -(targets * targets.log()).sum(dim=-1).mean()
    assert at_target.item() == pytest.approx(entropy.item(), rel=1e-5)
    elsewhere, _ = hl_gauss_loss(targets.log() + torch.randn(1, 2, 6), returns, mask, 0.0, 4.0)
    assert elsewhere.item() > at_target.item()


@pytest.mark.parametrize(("ret", "seed"), [(3.7, None), (0.2, None), (10.0, None), (3.9, 0), (0.1, 1)])
def test_sgd_step_moves_value_towards_the_return(ret, seed):
    if seed is None:
        logits = torch.zeros(1, 1, 8)
    else:
        logits = torch.randn(1, 1, 8, generator=torch.Generator().manual_seed(seed)) * 0.5
    logits.requires_grad_(True)
    returns = torch.full((1, 1), ret)
    goal = min(max(ret, 0.0), 4.0)  # the critic can only reach the clamped return
    before = abs(hl_gauss_value(logits, 0.0, 4.0).item() - goal)
    loss, _ = hl_gauss_loss(logits, returns, torch.ones(1, 1), 0.0, 4.0)
    loss.backward()
    with torch.no_grad():
        after = abs(hl_gauss_value(logits - 1.0 * logits.grad, 0.0, 4.0).item() - goal)
    assert after < before


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean"])
def test_hl_gauss_loss_padding_invariance(agg):
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, generator=generator)
    returns = torch.rand(2, 3, generator=generator) * 4
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    loss, stats = hl_gauss_loss(logits, returns, mask, 0.0, 4.0, agg=agg)
    padded, padded_stats = hl_gauss_loss(pad(logits, 9.0), pad(returns, -30.0), pad(mask, 0), 0.0, 4.0, agg=agg)
    assert padded.item() == pytest.approx(loss.item(), rel=1e-6)
    assert padded_stats["value_mean"].item() == pytest.approx(stats["value_mean"].item(), rel=1e-6)


def test_hl_gauss_half_precision_logits_are_upcast():
    logits = torch.randn(2, 3, 51, generator=torch.Generator().manual_seed(4))
    returns = torch.rand(2, 3) * 4
    mask = torch.ones(2, 3)
    loss, stats = hl_gauss_loss(logits.bfloat16(), returns, mask, 0.0, 4.0)
    reference, reference_stats = hl_gauss_loss(logits.bfloat16().float(), returns, mask, 0.0, 4.0)
    assert loss.dtype == torch.float32 and hl_gauss_value(logits.bfloat16(), 0.0, 4.0).dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    assert stats["value_mean"].item() == pytest.approx(reference_stats["value_mean"].item(), rel=1e-6)


def test_hl_gauss_loss_checks_shapes_and_detaches_stats():
    with pytest.raises(ValueError, match=r"logits \[B, R, K\]"):
        hl_gauss_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3), 0.0, 1.0)
    _, stats = hl_gauss_loss(torch.zeros(2, 3, 4, requires_grad=True), torch.zeros(2, 3), torch.ones(2, 3), 0.0, 1.0)
    assert not any(v.requires_grad for v in stats.values())


# ---- re-export from rlhf.algorithms.losses ----------------------------------------------


def test_reexported_from_losses():
    from rlhf.algorithms import losses, value

    for name in ("value_loss", "hl_gauss_bin_centers", "hl_gauss_targets", "hl_gauss_value", "hl_gauss_loss"):
        assert getattr(losses, name) is getattr(value, name)
    with pytest.raises(AttributeError):
        losses.no_such_loss  # noqa: B018


@pytest.mark.parametrize("first", ["rlhf.algorithms.value", "rlhf.algorithms.losses"])
def test_no_import_cycle_in_either_order(first):
    code = f"import {first}; from rlhf.algorithms.losses import value_loss, hl_gauss_loss, aggregate"
    subprocess.run([sys.executable, "-c", code], check=True)
