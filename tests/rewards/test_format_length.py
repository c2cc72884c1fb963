"""The `format` (regex or \\boxed{}) and `length` (linear penalty past a target) reward sources."""

import pytest
import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RewardConfig, RewardSourceConfig
from rlhf.data.batch import Batch
from rlhf.rewards.combine import build_source
from rlhf.rewards.registry import build_reward_source


def texts(*responses: str) -> Batch:
    return Batch(non_tensors={"response_text": list(responses)})


def lengths(*counts: int) -> Batch:
    mask = torch.zeros(len(counts), max(counts) + 1, dtype=torch.long)
    for i, count in enumerate(counts):
        mask[i, :count] = 1
    return Batch({"response_mask": mask})


def test_pattern_is_searched_across_lines():
    source = build_reward_source("format", {"pattern": r"<think>.*</think>\s*\d+$"})
    output = source.score(texts("<think>a\nb</think> 42", "42", "<think>x</think> forty"))
    assert output.scores.tolist() == [1.0, 0.0, 0.0]
    assert output.scores.dtype == torch.float32
    assert output.metrics == pytest.approx({"match_rate": 1 / 3})


def test_boxed_and_custom_rewards():
    source = build_reward_source("format", {"boxed": True, "reward_if_match": 0.5, "reward_if_missing": -1.0})
    output = source.score(texts(r"so \boxed{12}", "boxed{12}", r"\boxed 12"))
    assert output.scores.tolist() == [0.5, -1.0, -1.0]


@pytest.mark.parametrize(("kwargs", "phrase"), [
    ({"pattern": "(unclosed"}, "kwargs.pattern '(unclosed' is not a valid regular expression (missing )"),
    ({}, "give exactly one of kwargs.pattern"),
    ({"pattern": "x", "boxed": True}, "give exactly one of kwargs.pattern"),
])
def test_bad_format_kwargs_are_config_errors_naming_the_source(kwargs, phrase):
    reward = RewardConfig(sources=[RewardSourceConfig(type="arithmetic"), RewardSourceConfig(type="format", kwargs=kwargs)])
    with pytest.raises(ConfigError) as info:
        build_source(reward, 1)
    assert str(info.value).startswith("reward.sources.1: format: ") and phrase in str(info.value)


def test_length_penalty_is_linear_past_the_target():
    source = build_reward_source("length", {"target": 3, "coef": 0.5})
    output = source.score(lengths(1, 3, 4, 7))
    # -coef * max(0, length - target): 0, 0, -0.5, -2.0
    assert output.scores.tolist() == [0.0, 0.0, -0.5, -2.0]
    assert output.scores.dtype == torch.float32
    assert output.metrics == {"over_target_fraction": 0.5}


@pytest.mark.parametrize("kwargs", [{"target": -1}, {"target": 2.5}, {"target": 4, "coef": -0.1}, {"coef": 0.1}])
def test_bad_length_kwargs_are_config_errors(kwargs):
    with pytest.raises(ConfigError, match=r"^reward.sources.0: .*(target|coef)"):
        build_source(RewardConfig(sources=[RewardSourceConfig(type="length", kwargs=kwargs)]), 0)
