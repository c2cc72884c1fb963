"""Weighted combination of reward sources and the reward-source registry."""

import pytest
import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import PerSampleRuleSource, RewardOutput
from rlhf.rewards.combine import RewardCombiner, WeightedSource
from rlhf.rewards.registry import REWARD_SOURCES, build_reward_source


class FixedSource:
    """A source that returns given scores and metrics, whatever the batch."""

    def __init__(self, scores, metrics=None):
        self.scores = torch.as_tensor(scores)
        self.metrics = metrics or {}

    def score(self, batch: Batch) -> RewardOutput:
        return RewardOutput(self.scores, dict(self.metrics))


def text_batch(responses, truths) -> Batch:
    return Batch(non_tensors={"response_text": list(responses), "ground_truth": list(truths)})


def test_weighted_sum_and_per_source_metrics():
    batch = text_batch(["a", "b", "c"], ["a", "x", "c"])
    combiner = RewardCombiner([
        WeightedSource("correct", 1.0, FixedSource([1.0, 0.0, 1.0])),
        WeightedSource("length", -0.5, FixedSource([2.0, 4.0, 0.0], {"clipped": 0.25})),
    ])
    total, per_source, metrics = combiner.score(batch)
    assert total.tolist() == pytest.approx([1.0 - 1.0, 0.0 - 2.0, 1.0 - 0.0])
    assert total.dtype == torch.float32
    assert set(per_source) == {"correct", "length"}
    assert per_source["length"].tolist() == [2.0, 4.0, 0.0]
    assert metrics == pytest.approx({
        "reward/correct/mean": 2 / 3,
        "reward/length/mean": 2.0,
        "reward/length/clipped": 0.25,
    })


def test_integer_scores_are_cast_to_float():
    total, per_source, metrics = RewardCombiner([WeightedSource("s", 2.0, FixedSource([1, 0]))]).score(text_batch("ab", "ab"))
    assert total.tolist() == [2.0, 0.0]
    assert per_source["s"].dtype == torch.float32
    assert metrics["reward/s/mean"] == 0.5


def test_no_sources_gives_zero():
    total, per_source, metrics = RewardCombiner([]).score(text_batch("ab", "ab"))
    assert total.tolist() == [0.0, 0.0] and per_source == {} and metrics == {}


@pytest.mark.parametrize("scores", [[1.0, 0.0], [[1.0], [0.0], [1.0]], [[1.0, 0.0, 1.0]]])
def test_wrong_shape_names_the_source(scores):
    combiner = RewardCombiner([WeightedSource("bad", 1.0, FixedSource(scores))])
    with pytest.raises(ValueError, match=r"reward source 'bad' returned shape .*expected \(3,\)"):
        combiner.score(text_batch("abc", "abc"))


def test_rule_source_scores_each_sample():
    source = PerSampleRuleSource(lambda response, truth: float(len(response)) + (response == truth))
    output = source.score(text_batch(["ab", "c"], ["ab", "d"]))
    assert output.scores.tolist() == [3.0, 1.0] and output.scores.dtype == torch.float32


def test_registry_builds_arithmetic_source():
    source = build_reward_source("arithmetic", {})
    output = source.score(text_batch([" 52 ", "052", "7"], ["52", "52", "8"]))
    assert output.scores.tolist() == [1.0, 0.0, 0.0]
    assert "arithmetic" in REWARD_SOURCES


def test_arithmetic_source_rejects_kwargs():
    with pytest.raises(TypeError, match="no kwargs"):
        build_reward_source("arithmetic", {"strict": True})


def test_unknown_type_lists_the_valid_ones():
    with pytest.raises(KeyError, match="unknown reward source 'llm_judge'; valid: arithmetic"):
        build_reward_source("llm_judge", {})


def test_combiner_with_registered_source():
    combiner = RewardCombiner([WeightedSource("arithmetic", 0.5, build_reward_source("arithmetic", {}))])
    total, _, metrics = combiner.score(text_batch(["3", "4"], ["3", "5"]))
    assert total.tolist() == [0.5, 0.0]
    assert metrics == {"reward/arithmetic/mean": 0.5}
