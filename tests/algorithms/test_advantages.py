"""GRPO / Dr. GRPO advantages and the group statistics behind them."""

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS, drgrpo, get_advantage_estimator, grpo
from rlhf.algorithms.groups import group_ids, group_mean_std, group_sum

EPS = 1e-6


# ---- groups.py ---------------------------------------------------------------------------


def test_group_ids_dense_in_first_seen_order_for_lists():
    ids, count = group_ids(["b", "a", "b", "c"])
    assert ids.tolist() == [0, 1, 0, 2] and count == 3
    assert ids.dtype == torch.long


def test_group_ids_from_tensor():
    ids, count = group_ids(torch.tensor([7, 3, 7, 9]))
    assert count == 3
    # same partition as the labels: equal labels <-> equal ids
    assert ids[0] == ids[2] and len({ids[0].item(), ids[1].item(), ids[3].item()}) == 3


def test_group_sum():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert group_sum(values, torch.tensor([0, 1, 0, 1]), 2).tolist() == [4.0, 6.0]


def test_group_mean_std_by_hand():
    # group 0 = {1, 3}: mean 2, unbiased var ((1)^2 + (1)^2) / 1 = 2; group 1 = {5}: std 0
    values = torch.tensor([1.0, 5.0, 3.0])
    mean, std, count = group_mean_std(values, torch.tensor([0, 1, 0]), 2)
    assert mean.tolist() == [2.0, 5.0, 2.0]
    assert std.tolist() == pytest.approx([math.sqrt(2), 0.0, math.sqrt(2)])
    assert count.tolist() == [2.0, 1.0, 2.0]


# ---- grpo / drgrpo by hand ---------------------------------------------------------------


def test_grpo_two_groups_by_hand():
    # each group {1, 0}: mean 0.5, unbiased std sqrt(0.5) -> advantages ±0.5/sqrt(0.5) = ±sqrt(0.5)
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0])
    mask = torch.ones(4, 3)
    advantages, returns = grpo(scores, [0, 0, 1, 1], mask)
    expected = 0.5 / (math.sqrt(0.5) + EPS)
    assert advantages[:, 0].tolist() == pytest.approx([expected, -expected, -expected, expected], rel=1e-6)
    assert torch.equal(advantages, advantages[:, :1].expand(4, 3))  # same value on every token
    assert torch.equal(returns, advantages)


def test_grpo_unbiased_std_three_samples():
    # {1, 2, 3}: mean 2, unbiased std sqrt((1 + 0 + 1) / 2) = 1 (the biased std would be 0.816)
    advantages, _ = grpo(torch.tensor([1.0, 2.0, 3.0]), ["p", "p", "p"], torch.ones(3, 1))
    assert advantages[:, 0].tolist() == pytest.approx([-1 / (1 + EPS), 0.0, 1 / (1 + EPS)], rel=1e-6)


def test_drgrpo_keeps_only_the_mean_baseline():
    advantages, returns = drgrpo(torch.tensor([1.0, 0.0, 0.0, 1.0]), [0, 0, 1, 1], torch.ones(4, 2))
    assert advantages[:, 0].tolist() == [0.5, -0.5, -0.5, 0.5]
    assert torch.equal(returns, advantages)
    # {3, 0, 0}: mean 1 -> 2, -1, -1
    advantages, _ = drgrpo(torch.tensor([3.0, 0.0, 0.0]), [0, 0, 0], torch.ones(3, 1))
    assert advantages[:, 0].tolist() == [2.0, -1.0, -1.0]


def test_singleton_group_gets_zero():
    advantages, _ = grpo(torch.tensor([5.0, 1.0, 0.0]), ["alone", "pair", "pair"], torch.ones(3, 2))
    assert advantages[0].tolist() == [0.0, 0.0]
    assert advantages[1, 0] > 0 > advantages[2, 0]
    advantages, _ = drgrpo(torch.tensor([5.0]), [0], torch.ones(1, 2))
    assert advantages.tolist() == [[0.0, 0.0]]


def test_group_with_equal_scores_gets_zero():
    advantages, _ = grpo(torch.tensor([1.0, 1.0, 1.0]), [0, 0, 0], torch.ones(3, 2))
    assert torch.equal(advantages, torch.zeros(3, 2))


def test_mask_zeroes_padding_tokens():
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]])
    advantages, _ = grpo(torch.tensor([1.0, 0.0, 0.0, 1.0]), [0, 0, 1, 1], mask)
    value = 0.5 / (math.sqrt(0.5) + EPS)
    expected = torch.tensor([[value, value, 0], [-value, 0, 0], [0, 0, 0], [value, value, value]])
    assert torch.allclose(advantages, expected)


def test_integer_scores_are_promoted_to_float():
    advantages, _ = drgrpo(torch.tensor([1, 0]), [0, 0], torch.ones(2, 1))
    assert advantages.dtype == torch.float32 and advantages[:, 0].tolist() == [0.5, -0.5]


def test_string_labels_and_tensor_labels_agree():
    scores = torch.tensor([0.3, 1.0, 0.0, 0.9, 0.2, 0.5])
    mask = torch.ones(6, 2)
    from_strings, _ = grpo(scores, ["x", "y", "x", "z", "y", "x"], mask)
    from_tensor, _ = grpo(scores, torch.tensor([40, 12, 40, 3, 12, 40]), mask)
    assert torch.allclose(from_strings, from_tensor)


# ---- registry ----------------------------------------------------------------------------


def test_registry_returns_the_functions():
    assert get_advantage_estimator("grpo") is grpo
    assert get_advantage_estimator("drgrpo") is drgrpo
    assert set(ADVANTAGE_ESTIMATORS) >= {"grpo", "drgrpo"}


def test_unknown_estimator_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown advantage estimator 'gae'.*drgrpo, grpo"):
        get_advantage_estimator("gae")


# ---- loop vs vectorised, permutation equivariance ---------------------------------------


def loop_grpo(scores: list[float], labels: list[int], norm_by_std: bool) -> list[float]:
    """Reference: per-sample loop with the statistics module (unbiased std)."""
    out = []
    for score, label in zip(scores, labels):
        members = [s for s, g in zip(scores, labels) if g == label]
        if len(members) < 2:
            out.append(0.0)
            continue
        value = score - statistics.fmean(members)
        out.append(value / (statistics.stdev(members) + EPS) if norm_by_std else value)
    return out


group_structures = st.integers(min_value=1, max_value=12).flatmap(
    lambda size: st.tuples(
        st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 2.0]), min_size=size, max_size=size),
        st.lists(st.integers(min_value=0, max_value=4), min_size=size, max_size=size),
        st.integers(min_value=1, max_value=4),
    )
)


@settings(max_examples=60, deadline=None)
@given(group_structures, st.booleans())
def test_vectorised_matches_loop(structure, norm_by_std):
    scores, labels, response_len = structure
    mask = torch.ones(len(scores), response_len)
    advantages, _ = grpo(torch.tensor(scores, dtype=torch.float64), labels, mask, norm_by_std=norm_by_std)
    expected = loop_grpo(scores, labels, norm_by_std)
    assert advantages[:, 0].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)


@settings(max_examples=40, deadline=None)
@given(group_structures, st.randoms(use_true_random=False))
def test_permutation_equivariance(structure, rng):
    scores, labels, response_len = structure
    size = len(scores)
    scores_t = torch.tensor(scores)
    mask = (torch.arange(response_len)[None, :] < torch.arange(1, size + 1)[:, None] % (response_len + 1)).float()
    perm = list(range(size))
    rng.shuffle(perm)
    advantages, _ = grpo(scores_t, labels, mask)
    permuted, _ = grpo(scores_t[perm], [labels[i] for i in perm], mask[perm])
    assert torch.allclose(permuted, advantages[perm], atol=1e-6)
