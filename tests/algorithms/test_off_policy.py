"""The off-policy corrections against hand-computed weights (rlhf.algorithms.off_policy).

Two sequences; per-token ratios rho = pi_old / mu of their valid tokens:
    row 0: 2, 1, 9        row 1: 0.6, 3, (padding)
"""

import math

import pytest
import torch

from rlhf.algorithms.losses import ppo_policy_loss, gspo_policy_loss
from rlhf.algorithms.off_policy import (
    OFF_POLICY_CORRECTIONS, OffPolicyBounds, mismatch_kl, off_policy_weights, weight_stats,
)

MU = torch.tensor([[0.5, 0.5, 0.1], [0.4, 0.1, 0.7]]).log()
OLD = torch.tensor([[1.0, 0.5, 0.9], [0.24, 0.3, 0.123]]).log()
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def weights(name, **bounds):
    return off_policy_weights(name, OLD, MU, MASK, OffPolicyBounds(**bounds))


def test_tis_truncates_each_token_ratio_at_the_cap():
    torch.testing.assert_close(weights("tis", tis_cap=2.0), torch.tensor([[2.0, 1.0, 2.0], [0.6, 2.0, 0.0]]))


def test_icepop_drops_tokens_outside_the_band_and_weights_the_rest():
    torch.testing.assert_close(weights("icepop", icepop_bounds=(0.5, 5.0)), torch.tensor([[2.0, 1.0, 0.0], [0.6, 3.0, 0.0]]))


def test_mis_geometric_drops_the_sequence_whose_mean_log_ratio_leaves_the_band():
    # row 0: (2 * 1 * 9) ** (1/3) = 2.62 > 2 -> dropped; row 1: (0.6 * 3) ** (1/2) = 1.34 -> kept
    kept = math.sqrt(1.8)
    torch.testing.assert_close(weights("mis", mis_bounds=(0.5, 2.0)), torch.tensor([[0.0, 0.0, 0.0], [kept, kept, 0.0]]))


def test_mis_product_uses_the_full_sequence_ratio():
    torch.testing.assert_close(weights("mis", mis_bounds=(0.5, 20.0), mis_ratio="product"),
                               torch.tensor([[18.0, 18.0, 18.0], [1.8, 1.8, 0.0]]))
    torch.testing.assert_close(weights("mis", mis_bounds=(0.5, 10.0), mis_ratio="product"),
                               torch.tensor([[0.0, 0.0, 0.0], [1.8, 1.8, 0.0]]))


def test_decoupled_weight_is_the_proximal_over_behaviour_ratio_capped_only_when_asked():
    torch.testing.assert_close(weights("decoupled"), torch.tensor([[2.0, 1.0, 9.0], [0.6, 3.0, 0.0]]))
    torch.testing.assert_close(weights("decoupled", decoupled_cap=4.0), torch.tensor([[2.0, 1.0, 4.0], [0.6, 3.0, 0.0]]))


def test_none_gives_no_weights_and_an_unknown_name_lists_the_valid_ones():
    assert weights("none") is None
    with pytest.raises(KeyError, match="tis"):
        weights("tsi")


@pytest.mark.parametrize("name", [n for n in OFF_POLICY_CORRECTIONS if n != "none"])
def test_every_correction_is_exactly_one_when_the_engines_agree(name):
    assert torch.equal(off_policy_weights(name, OLD, OLD, MASK, OffPolicyBounds()), MASK)


def test_weight_stats_count_rejected_tokens_and_wholly_rejected_sequences():
    stats = weight_stats(weights("mis", mis_bounds=(0.5, 2.0)), MASK)
    assert stats["masked_token_frac"].item() == pytest.approx(3 / 5)
    assert stats["masked_seq_frac"].item() == pytest.approx(1 / 2)
    assert stats["weight_max"].item() == pytest.approx(math.sqrt(1.8))
    icepop = weight_stats(weights("icepop"), MASK)
    assert icepop["masked_token_frac"].item() == pytest.approx(1 / 5)
    assert icepop["masked_seq_frac"].item() == 0.0
    assert icepop["weight_mean"].item() == pytest.approx((2 + 1 + 0 + 0.6 + 3) / 5)


def test_mismatch_kl_is_the_token_mean_k3_over_valid_tokens():
    k3 = [r - 1 - math.log(r) for r in (2.0, 1.0, 9.0, 0.6, 3.0)]
    assert mismatch_kl(OLD, MU, MASK).item() == pytest.approx(sum(k3) / 5, rel=1e-5)
    assert mismatch_kl(OLD, OLD, MASK).item() == 0.0


@pytest.mark.parametrize("loss", [ppo_policy_loss, gspo_policy_loss])
def test_weights_multiply_each_tokens_loss_and_its_gradient(loss):
    torch.manual_seed(0)
    logprobs = (OLD + 0.05 * torch.randn(2, 3)).requires_grad_()
    advantages = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]])
    token_weights = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.0, 0.0]])
    weighted, _ = loss(logprobs, OLD, advantages, MASK, agg="seq-mean-token-sum", weights=token_weights)
    unweighted, _ = loss(logprobs, OLD, advantages, MASK, agg="seq-mean-token-sum", weights=torch.ones(2, 3))
    plain, _ = loss(logprobs, OLD, advantages, MASK, agg="seq-mean-token-sum")
    torch.testing.assert_close(unweighted, plain)
    (grad,) = torch.autograd.grad(weighted, logprobs)
    (plain_grad,) = torch.autograd.grad(plain, logprobs)
    # a weight scales that token's gradient; a rejected token gets none
    torch.testing.assert_close(grad, plain_grad * token_weights * MASK)
