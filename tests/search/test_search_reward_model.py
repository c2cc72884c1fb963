"""The reward model of `rlhf eval --search` (`rlhf.search.reward_model`): an ORM or PRM directory
that `rlhf rm` wrote, its scores and vote weights, and the errors for a directory that is not
one or a PRM whose tokenizer has no step marker."""

import json

import pytest
import torch
from tiny_helpers import response_batch, tiny_reward_model_dir

from rlhf.config.errors import ConfigError
from rlhf.data.batch import Batch
from rlhf.search.reward_model import SearchRewardModel, read_reward_model_info

RESPONSES = ["42", "17", "", "108"]


def batch() -> Batch:
    """Four responses as a rollout engine returns them: ids, mask, text and the tokenizer."""
    return response_batch(["20+22="] * 4, RESPONSES)


def test_an_orm_scores_with_its_logit_and_votes_with_its_probability(tmp_path):
    model = SearchRewardModel(tiny_reward_model_dir(tmp_path / "orm", "classifier", seed=1))
    scores = model.scores(batch())
    assert scores.shape == (4,) and scores.dtype == torch.float32
    torch.testing.assert_close(model.vote_weights(scores), torch.sigmoid(scores))


@pytest.mark.parametrize("how", ["min", "product", "last", "mean"])
def test_a_prm_scores_with_its_step_aggregate(tmp_path, how):
    path = tiny_reward_model_dir(tmp_path / "prm", "two_class", seed=1, step_split="(?<=.)")
    model = SearchRewardModel(path, how)
    steps = model.source.score(batch()).step_scores
    expected = {"min": lambda s: s.min(), "product": lambda s: s.prod(), "last": lambda s: s[-1], "mean": lambda s: s.mean()}[how]
    want = torch.tensor([float(expected(s)) if len(s) else 0.0 for s in steps])
    assert [len(s) for s in steps] == [2, 2, 0, 3]  # one step per character
    torch.testing.assert_close(model.scores(batch()), want)
    assert torch.equal(model.vote_weights(want), want)


def test_a_directory_that_is_not_a_reward_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is not a directory"):
        read_reward_model_info(tmp_path / "missing")
    with pytest.raises(ConfigError, match="is not a reward-model directory: it has no reward_model.json"):
        read_reward_model_info(tmp_path)
    (tmp_path / "reward_model.json").write_text(json.dumps({"type": "policy"}))
    with pytest.raises(ConfigError, match="names type 'policy'; a reward model is 'orm' or 'prm'"):
        read_reward_model_info(tmp_path)


def test_a_prm_without_a_one_token_step_marker_is_refused(tmp_path):
    path = tiny_reward_model_dir(tmp_path / "prm", "two_class", seed=1, separator=" ки")
    with pytest.raises(ConfigError, match=r"--reward-model: the PRM at .* cannot score: .*separator"):
        SearchRewardModel(path)
