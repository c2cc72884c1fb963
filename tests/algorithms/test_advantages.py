"""Group estimators (GRPO, Dr. GRPO, RLOO, REINFORCE++-baseline) and the group statistics behind
them; the registry and `compute_advantages`; and the padding / permutation properties every
registered estimator must have. Token-level recursions are tested in test_returns.py."""

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    compute_advantages,
    drgrpo,
    estimator,
    get_advantage_estimator,
    grpo,
    reinforce_pp_baseline,
    rloo,
)
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



# ---- rloo / reinforce_pp_baseline by hand ------------------------------------------------


def test_rloo_by_hand():
    # group 0 = {1, 0, 3}: 1 - mean(0, 3) = -0.5, 0 - mean(1, 3) = -2, 3 - mean(1, 0) = 2.5
    # group 1 = {2} alone -> 0
    mask = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 1]])
    advantages, returns = rloo(torch.tensor([1.0, 0.0, 3.0, 2.0]), [0, 0, 0, 1], mask)
    assert advantages.tolist() == [[-0.5, -0.5], [-2.0, -2.0], [2.5, 0.0], [0.0, 0.0]]
    assert torch.equal(returns, advantages)


def test_rloo_is_k_over_k_minus_one_times_drgrpo():
    # leave-one-out baseline: s - (sum - s)/(k - 1) = k/(k - 1) * (s - mean)
    scores, labels, mask = torch.tensor([0.2, 0.9, 0.4, 1.0]), ["a"] * 4, torch.ones(4, 3)
    assert torch.allclose(rloo(scores, labels, mask)[0], 4 / 3 * drgrpo(scores, labels, mask)[0], atol=1e-6)


def test_reinforce_pp_baseline_by_hand():
    # centred: group a {1, 0} -> +0.5, -0.5; group b {2, 2} -> 0, 0
    # valid tokens {0.5, 0.5, -0.5, -0.5, 0, 0}: mean 0, unbiased var (4 * 0.25) / 5 = 0.2
    mask = torch.tensor([[1, 1], [1, 1], [1, 0], [1, 0]])
    advantages, returns = reinforce_pp_baseline(torch.tensor([1.0, 0.0, 2.0, 2.0]), ["a", "a", "b", "b"], mask)
    value = 0.5 / math.sqrt(0.2 + 1e-8)
    expected = torch.tensor([[value, value], [-value, -value], [0.0, 0.0], [0.0, 0.0]])
    assert torch.allclose(advantages, expected, atol=1e-6)
    assert torch.equal(returns, advantages)


# ---- loop vs vectorised: group estimators ------------------------------------------------


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


def loop_rloo(scores: list[float], labels: list[int]) -> list[float]:
    """Reference: each score minus the mean of the other members of its group."""
    out = []
    for i, (score, label) in enumerate(zip(scores, labels)):
        others = [s for j, (s, g) in enumerate(zip(scores, labels)) if g == label and j != i]
        out.append(score - statistics.fmean(others) if others else 0.0)
    return out


def broadcast(per_sample: list[float], mask: list[list[int]]) -> list[list[float]]:
    return [[value if m else 0.0 for m in row] for value, row in zip(per_sample, mask)]


def loop_reinforce_pp_baseline(scores: list[float], labels: list[int], mask: list[list[int]]) -> list[list[float]]:
    """Reference: centre on the group mean, then whiten over the valid tokens (unbiased var)."""
    centred = [s - statistics.fmean([t for t, g in zip(scores, labels) if g == label]) for s, label in zip(scores, labels)]
    tokens = [value for value, row in zip(centred, mask) for m in row if m]
    mean = statistics.fmean(tokens) if tokens else 0.0
    var = statistics.variance(tokens) if len(tokens) > 1 else 1.0
    return broadcast([(value - mean) / math.sqrt(var + 1e-8) for value in centred], mask)


GROUP_REFERENCES = {
    "grpo": lambda scores, labels, mask: broadcast(loop_grpo(scores, labels, True), mask),
    "drgrpo": lambda scores, labels, mask: broadcast(loop_grpo(scores, labels, False), mask),
    "rloo": lambda scores, labels, mask: broadcast(loop_rloo(scores, labels), mask),
    "reinforce_pp_baseline": loop_reinforce_pp_baseline,
}


@st.composite
def group_batches(draw):
    """(scores, labels, mask rows): discrete scores so that groups tie; random 0/1 masks."""
    size, response_len = draw(st.integers(1, 12)), draw(st.integers(1, 4))
    scores = draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0, -1.0, 2.0]), min_size=size, max_size=size))
    labels = draw(st.lists(st.integers(0, 4), min_size=size, max_size=size))
    row = st.lists(st.integers(0, 1), min_size=response_len, max_size=response_len)
    mask = draw(st.lists(row, min_size=size, max_size=size))
    return scores, labels, mask


@pytest.mark.parametrize("name", sorted(GROUP_REFERENCES))
@settings(max_examples=40, deadline=None)
@given(batch=group_batches())
def test_group_estimators_match_loop(name, batch):
    scores, labels, mask = batch
    advantages, _ = get_advantage_estimator(name)(torch.tensor(scores), labels, torch.tensor(mask))
    expected = GROUP_REFERENCES[name](scores, labels, mask)
    assert advantages.tolist() == [pytest.approx(row, rel=1e-4, abs=1e-4) for row in expected]


# ---- every estimator: dtype, mask, padding invariance, permutation equivariance ---------


def random_inputs(seed: int, batch: int, length: int, right_padded: bool) -> dict:
    """Every input any estimator takes, for a batch of `batch` rows of `length` tokens."""
    generator = torch.Generator().manual_seed(seed)
    if right_padded:
        lengths = torch.randint(0, length + 1, (batch,), generator=generator)
        mask = (torch.arange(length)[None, :] < lengths[:, None]).float()
    else:
        mask = (torch.rand(batch, length, generator=generator) < 0.7).float()
    return {
        "scores": torch.randint(0, 5, (batch,), generator=generator).float() / 4,
        "group_index": torch.randint(0, 3, (batch,), generator=generator).tolist(),
        "response_mask": mask,
        "token_rewards": torch.randn(batch, length, generator=generator),
        "values": torch.randn(batch, length, generator=generator),
        "baseline_scores": torch.rand(batch, generator=generator),
        "gamma": 0.9,
        "lam": 0.8,
        # multi-turn inputs: up to 3 turns per row, tokens assigned to turns (or -1) at random
        "turn_rewards": torch.randn(batch, 3, generator=generator),
        "turn_mask": (torch.arange(3)[None, :] < torch.randint(1, 4, (batch, 1), generator=generator)).float(),
        "turn_index": torch.randint(-1, 3, (batch, length), generator=generator),
        "turn_gamma": 0.8,
        "utterance_advantages": torch.randn(batch, 3, generator=generator),  # ArCHer's critic's, per turn
    }


def pad_columns(inputs: dict, extra: int, fill: float) -> dict:
    """Append `extra` masked columns; token-level inputs get `fill` there."""
    padded = dict(inputs)
    for key in ("token_rewards", "values"):
        padded[key] = torch.cat([inputs[key], torch.full((len(inputs[key]), extra), fill)], dim=1)
    padded["response_mask"] = torch.cat([inputs["response_mask"], torch.zeros(len(inputs["response_mask"]), extra)], dim=1)
    # masked columns that still name a real turn
    padded["turn_index"] = torch.cat([inputs["turn_index"], torch.zeros(len(inputs["turn_index"]), extra, dtype=torch.long)], dim=1)
    return padded


def permute_rows(inputs: dict, perm: list[int]) -> dict:
    permuted = {key: value[perm] if isinstance(value, torch.Tensor) else value for key, value in inputs.items()}
    permuted["group_index"] = [inputs["group_index"][i] for i in perm]
    return permuted


batch_shapes = st.tuples(st.integers(0, 2**31 - 1), st.integers(1, 8), st.integers(1, 6), st.booleans())


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@settings(max_examples=25, deadline=None)
@given(shape=batch_shapes, extra=st.integers(1, 3), fill=st.sampled_from([0.0, 1e3]))
def test_padding_changes_nothing(name, shape, extra, fill):
    inputs = random_inputs(*shape)
    advantages, returns = compute_advantages(name, **inputs)
    padded_advantages, padded_returns = compute_advantages(name, **pad_columns(inputs, extra, fill))
    length = advantages.shape[1]
    assert advantages.dtype == returns.dtype == torch.float32
    for original, padded in ((advantages, padded_advantages), (returns, padded_returns)):
        assert torch.allclose(padded[:, :length], original, atol=1e-5)
        assert torch.equal(padded[:, length:], torch.zeros_like(padded[:, length:]))
        assert torch.equal(original * (1 - inputs["response_mask"]), torch.zeros_like(original))


@pytest.mark.parametrize("name", sorted(ADVANTAGE_ESTIMATORS))
@settings(max_examples=25, deadline=None)
@given(shape=batch_shapes, rng=st.randoms(use_true_random=False))
def test_permutation_equivariance(name, shape, rng):
    inputs = random_inputs(*shape)
    perm = list(range(len(inputs["scores"])))
    rng.shuffle(perm)
    advantages, returns = compute_advantages(name, **inputs)
    permuted_advantages, permuted_returns = compute_advantages(name, **permute_rows(inputs, perm))
    assert torch.allclose(permuted_advantages, advantages[perm], atol=1e-5)
    assert torch.allclose(permuted_returns, returns[perm], atol=1e-5)


# ---- registry and compute_advantages -----------------------------------------------------

ALL_NAMES = {"gae", "grpo", "drgrpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "turn_rloo", "archer"}


def test_registry_holds_exactly_the_registered_estimators():
    assert set(ADVANTAGE_ESTIMATORS) == ALL_NAMES
    assert get_advantage_estimator("grpo") is grpo
    assert get_advantage_estimator("drgrpo") is drgrpo
    assert get_advantage_estimator("rloo") is rloo


def test_unknown_estimator_lists_the_valid_ones():
    valid = "archer, drgrpo, gae, grpo, reinforce_pp, reinforce_pp_baseline, remax, rloo, turn_rloo"
    with pytest.raises(KeyError, match=f"unknown advantage estimator 'ppo2'; valid: {valid}"):
        get_advantage_estimator("ppo2")
    with pytest.raises(KeyError, match="unknown advantage estimator 'ppo2'"):
        compute_advantages("ppo2", scores=torch.zeros(1))


def test_estimators_declare_their_inputs_and_what_the_run_must_prepare():
    assert estimator("gae").inputs == ("token_rewards", "values", "response_mask", "gamma", "lam")
    assert estimator("grpo").inputs == estimator("drgrpo").inputs == ("scores", "group_index", "response_mask")
    assert estimator("remax").inputs == ("token_rewards", "baseline_scores", "response_mask")
    assert {name for name, entry in ADVANTAGE_ESTIMATORS.items() if entry.needs_critic} == {"gae"}
    assert {name for name, entry in ADVANTAGE_ESTIMATORS.items() if entry.needs_greedy_baseline} == {"remax"}


def test_declared_inputs_are_what_each_function_takes():
    """The declarations match the functions (every required parameter is declared)."""
    import inspect

    for name, entry in ADVANTAGE_ESTIMATORS.items():
        parameters = inspect.signature(entry.fn).parameters
        required = {key for key, parameter in parameters.items() if parameter.default is inspect.Parameter.empty}
        assert required <= set(entry.inputs) <= set(parameters), name


def test_compute_advantages_passes_only_declared_inputs():
    inputs = random_inputs(seed=0, batch=6, length=4, right_padded=True)
    scores, labels, mask = inputs["scores"], inputs["group_index"], inputs["response_mask"]
    # a key no estimator declares is not passed on, so it cannot switch grpo into Dr. GRPO
    inputs["norm_by_std"] = False
    assert torch.equal(compute_advantages("grpo", **inputs)[0], grpo(scores, labels, mask)[0])
    assert torch.equal(compute_advantages("drgrpo", **inputs)[0], drgrpo(scores, labels, mask)[0])
    minimal = {"scores": scores, "group_index": labels, "response_mask": mask, "unrelated": object()}
    assert torch.equal(compute_advantages("grpo", **minimal)[0], grpo(scores, labels, mask)[0])


def test_compute_advantages_names_the_missing_inputs():
    inputs = random_inputs(seed=0, batch=2, length=3, right_padded=True)
    del inputs["values"], inputs["lam"]
    with pytest.raises(ValueError, match="advantage estimator 'gae' needs values, lam"):
        compute_advantages("gae", **inputs)
    with pytest.raises(ValueError, match="'remax' needs baseline_scores"):
        compute_advantages("remax", scores=torch.zeros(2), token_rewards=torch.zeros(2, 3), response_mask=torch.ones(2, 3))
