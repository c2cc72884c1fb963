"""DAPO's pieces of the sampling step: which groups are informative, the outcome reward on the
last token, the soft overlong penalty as a reward source, and dynamic sampling on a tiny run."""

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.token_rewards import outcome_token_rewards
from rlhf.cli.main import RECIPES_DIR
from rlhf.config.loader import load_recipe
from rlhf.controller.roles import build_roles
from rlhf.controller.loop import rollout_source
from rlhf.rollout.sync_source import informative_samples
from rlhf.controller.setup import build_run
from rlhf.timing import PhaseTimer
from rlhf.data.batch import Batch
from rlhf.rewards.registry import build_reward_source

# ---- informative_samples ----------------------------------------------------------------


def test_groups_with_equal_scores_are_not_informative():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 0.0, 0.0])
    groups = ["a", "a", "b", "b", "c", "c", "d", "d"]
    assert informative_samples(scores, groups).tolist() == [False, False, True, True, False, False, False, False]


def test_groups_need_not_be_consecutive():
    scores = torch.tensor([0.0, 2.0, 1.0, 2.0, 0.0, 2.0])
    groups = torch.tensor([7, 3, 7, 3, 7, 3])  # group 7 varies, group 3 does not
    assert informative_samples(scores, groups).tolist() == [True, False, True, False, True, False]


def test_a_single_sample_group_is_not_informative():
    assert informative_samples(torch.tensor([1.0, 0.0, 0.0]), [0, 1, 1]).tolist() == [False, False, False]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_noise_does_not_make_a_group_informative(dtype):
    # 0.1 + 0.2 != 0.3 in binary floating point; both are the same reward
    scores = torch.tensor([0.1 + 0.2, 0.3, 0.3, 1.0 / 3.0, 1.0 - 2.0 / 3.0, 0.1 + 0.2], dtype=dtype)
    assert informative_samples(scores, [0, 0, 0, 1, 1, 2]).tolist() == [False] * 6


@pytest.mark.parametrize(("score", "size"), [(9.9, 6), (12.3, 7), (-588.8455886134877, 7)])
def test_equal_scores_of_large_magnitude_are_not_informative(score, size):
    # float32 sums of such scores round, so a float32 group mean is off by an ulp and the
    # "std" of identical scores comes out above 1e-6 (reward-model scales, not 0/1 rules)
    assert informative_samples(torch.full((size,), score), [0] * size).tolist() == [False] * size


# ---- outcome_token_rewards --------------------------------------------------------------


def test_outcome_reward_sits_on_the_last_valid_token():
    scores = torch.tensor([2.0, -1.0, 0.5])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    expected = torch.tensor([[0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, -1.0], [0.5, 0.0, 0.0, 0.0]])
    rewards = outcome_token_rewards(scores, mask)
    assert rewards.dtype == torch.float32 and torch.equal(rewards, expected)


def test_outcome_reward_with_holes_in_the_mask_and_an_empty_row():
    scores = torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    expected = torch.tensor([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 4.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert torch.equal(outcome_token_rewards(scores, mask), expected)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=6), st.integers(0, 4), st.data())
def test_outcome_reward_matches_a_loop_and_ignores_extra_padding(mask_rows, extra, data):
    mask = torch.tensor(mask_rows, dtype=torch.long)
    scores = torch.tensor(data.draw(st.lists(st.floats(-10, 10), min_size=len(mask_rows), max_size=len(mask_rows))))
    rewards = outcome_token_rewards(scores, mask)
    expected = torch.zeros(mask.shape)
    for row, valid in enumerate(mask_rows):
        if any(valid):
            expected[row, max(i for i, v in enumerate(valid) if v)] = scores[row]
    assert torch.equal(rewards, expected)
    wider = torch.cat([mask, torch.zeros(len(mask_rows), extra, dtype=torch.long)], dim=1)
    assert torch.equal(outcome_token_rewards(scores, wider), torch.cat([expected, torch.zeros(len(mask_rows), extra)], dim=1))


# ---- the overlong reward source ---------------------------------------------------------


def lengths_batch(lengths: list[int], width: int = 8) -> Batch:
    mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
    return Batch(tensors={"response_ids": torch.zeros_like(mask), "response_mask": mask})


def test_overlong_scores_by_hand():
    source = build_reward_source("overlong", {"max_length": 6, "buffer_length": 4, "penalty": 0.5})
    output = source.score(lengths_batch([0, 2, 3, 4, 6, 8]))
    # free up to 6 - 4 = 2 tokens, then -0.5 * (length - 2) / 4, at most -0.5
    assert output.scores.dtype == torch.float32
    assert output.scores.tolist() == pytest.approx([0.0, 0.0, -0.125, -0.25, -0.5, -0.5])
    assert output.metrics == {"penalised_fraction": pytest.approx(4 / 6)}


def test_overlong_default_penalty_and_no_response_in_the_zone():
    source = build_reward_source("overlong", {"max_length": 5, "buffer_length": 1})
    output = source.score(lengths_batch([1, 4, 4]))
    assert output.scores.tolist() == [0.0, 0.0, 0.0]
    assert output.metrics["penalised_fraction"] == 0.0
    assert source.score(lengths_batch([5])).scores.tolist() == [-1.0]


@pytest.mark.parametrize("buffer_length", [0, -1, 7])
def test_overlong_rejects_a_bad_buffer_length(buffer_length):
    with pytest.raises(ValueError, match=f"buffer_length={buffer_length}, max_length=6"):
        build_reward_source("overlong", {"max_length": 6, "buffer_length": buffer_length})


# ---- dynamic sampling on a tiny run -----------------------------------------------------

SMALL = [
    "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=8", "actor.micro_batch_size=4",
]


@pytest.mark.parametrize("max_extra_rounds", [0, 3])
def test_dynamic_sampling_returns_whole_groups_informative_first(tmp_path: Path, max_extra_rounds: int):
    overrides = [*SMALL, f"data.dynamic_sampling.max_extra_rounds={max_extra_rounds}", f"trainer.output_dir={tmp_path / 'run'}"]
    run = build_run(load_recipe(RECIPES_DIR / "algorithms" / "dapo.yaml", overrides), "test")
    wanted, n = 4, 4
    sampled = rollout_source(run).next_batch(build_roles(run), PhaseTimer())
    batch, metrics = sampled.batch, sampled.metrics

    rounds = metrics["dynamic_sampling/rounds"]
    assert rounds == int(rounds) and 1 <= rounds <= 1 + max_extra_rounds
    assert sampled.all_scores.shape == (rounds * wanted * n,)
    assert len(batch) == wanted * n
    groups = batch["group_index"]
    assert all(len(set(groups[i : i + n])) == 1 for i in range(0, len(batch), n))  # whole groups, in a row
    assert len(set(groups)) == wanted  # ... each once

    informative = informative_samples(batch["scores"], groups).tolist()
    kept = sum(informative) // n
    assert informative == sorted(informative, reverse=True)  # kept groups first, then fillers
    assert kept + metrics["dynamic_sampling/filled_groups"] == wanted
    if metrics["dynamic_sampling/filled_groups"] > 0:  # it stopped short only when out of rounds
        assert rounds == 1 + max_extra_rounds
        generated_groups = rounds * wanted
        assert metrics["dynamic_sampling/dropped_groups"] == generated_groups - kept
    else:
        assert metrics["dynamic_sampling/dropped_groups"] <= rounds * wanted - wanted
    assert {"reward/arithmetic/mean", "reward/overlong/mean"} <= set(metrics)
