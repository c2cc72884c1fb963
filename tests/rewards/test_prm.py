"""`type: prm`: step scores from manual forwards at the markers, step ends on the policy's tokens,
and the refined process rewards the combiner places there."""

import pytest
import torch
from tiny_helpers import response_batch
from transformers import AutoModelForCausalLM, AutoModelForTokenClassification, AutoTokenizer

from rlhf.algorithms.refinement import clip_delta, delta
from rlhf.config.errors import ConfigError
from rlhf.config.schema import ProcessRewardConfig, RewardConfig, RewardSourceConfig
from rlhf.models.tiny_reward import build_tiny_reward_model
from rlhf.rewards.base import PerSampleRuleSource
from rlhf.rewards.combine import RewardCombiner, WeightedSource, build_source
from rlhf.rewards.registry import build_reward_source

PROMPTS = ["12+30=", "7+5=", "1+1="]
RESPONSES = ["10+30=40\n\n40+2=42\n\nso 42", "12", ""]
# steps: 3, 1 and 0; in response characters they end at 8, 17, 24 / 2 / -


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("prm")
    return {kind: str(build_tiny_reward_model(root / kind, kind, seed=3)) for kind in ("two_class", "token_tag")}


def manual_probs(path, text, marker, kind):
    """P(good) at every occurrence of `marker` in `text`, from one unpadded forward."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    ids = tokenizer(text)["input_ids"]
    marker_id = tokenizer.convert_tokens_to_ids(marker)
    positions = [i for i, token in enumerate(ids) if token == marker_id]
    with torch.no_grad():
        if kind == "two_class":
            logits = AutoModelForTokenClassification.from_pretrained(path)(input_ids=torch.tensor([ids])).logits[0]
            return logits[positions].softmax(-1)[:, 1]
        logits = AutoModelForCausalLM.from_pretrained(path)(input_ids=torch.tensor([ids])).logits[0]
        good, bad = tokenizer.convert_tokens_to_ids(["+", "-"])
        return logits[positions][:, [good, bad]].softmax(-1)[:, 0]


def test_two_class_step_scores_and_ends(paths):
    source = build_reward_source("prm", {"path": paths["two_class"], "kind": "two_class", "separator": "#", "batch_size": 2})
    output = source.score(response_batch(PROMPTS, RESPONSES))
    expected = manual_probs(paths["two_class"], "12+30=10+30=40#40+2=42#so 42#", "#", "two_class")
    torch.testing.assert_close(output.step_scores[0], expected, atol=1e-6, rtol=1e-5)
    assert len(set(expected.tolist())) == 3
    torch.testing.assert_close(output.step_scores[1], manual_probs(paths["two_class"], "7+5=12#", "#", "two_class"))
    assert output.step_scores[2].shape == (0,)
    # one char per token: a step ending at character c ends at token c - 1
    assert [ends.tolist() for ends in output.step_ends] == [[7, 16, 23], [1], []]
    assert output.scores.tolist() == pytest.approx([expected.min().item(), output.step_scores[1].item(), 0.0])
    assert output.metrics["steps_mean"] == pytest.approx(4 / 3)
    assert output.metrics["step_score_mean"] == pytest.approx(torch.cat(output.step_scores).mean().item())
    assert output.metrics["markers_merged"] == 0.0


def test_token_tag_with_a_joiner_regex_steps_and_a_template(paths):
    source = build_reward_source("prm", {"path": paths["token_tag"], "kind": "token_tag", "tag": "#", "joiner": "\n",
                                         "step_split": r";\s*", "template": "Q: {prompt}\n{steps}"})
    output = source.score(response_batch(["2*3="], ["2*3 = 6; so 6;"]))
    expected = manual_probs(paths["token_tag"], "Q: 2*3=\n2*3 = 6#\nso 6#", "#", "token_tag")
    torch.testing.assert_close(output.step_scores[0], expected, atol=1e-6, rtol=1e-5)
    assert output.step_ends[0].tolist() == [6, 12]


def test_truncated_steps_take_the_first_scored_step(paths):
    full = build_reward_source("prm", {"path": paths["two_class"], "separator": "#"})
    cut = build_reward_source("prm", {"path": paths["two_class"], "separator": "#", "max_length": 10})
    batch = response_batch(["12+30="], ["10+30=40\n\n40+2=42\n\nso 42"])
    # 29 tokens "12+30=10+30=40#40+2=42#so 42#"; the last 10 keep the second and third markers
    scores = cut.score(batch).step_scores[0]
    second, third = manual_probs(paths["two_class"], "=42#so 42#", "#", "two_class").tolist()
    assert scores.tolist() == pytest.approx([second, second, third], abs=1e-6)
    assert not torch.allclose(full.score(batch).step_scores[0], scores)


def test_missing_policy_tokenizer_is_explained(paths):
    source = build_reward_source("prm", {"path": paths["two_class"], "separator": "#"})
    batch = response_batch(PROMPTS, RESPONSES)
    batch.meta.clear()
    with pytest.raises(ValueError, match=r"batch.meta\['tokenizer'\]"):
        source.score(batch)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"separator": "#"}, "kwargs.path: a prm source needs"),
    ({"path": "two_class", "kind": "two_class"}, "kwargs.separator: kind two_class needs"),
    ({"path": "two_class", "separator": "\n\n"}, r"kwargs.separator: '\\n\\n' must be a single token .* 2 tokens"),
    ({"path": "token_tag", "kind": "token_tag", "tag": " ки"}, r"kwargs.tag: ' ки' must be a single token"),
    ({"path": "token_tag", "kind": "token_tag", "tag": "#", "good_token": "++"}, "kwargs.good_token: '[+][+]' must be a single token"),
    ({"path": "token_tag", "kind": "token_tag"}, "kwargs.tag: kind token_tag needs"),
    ({"path": "two_class", "separator": "#", "tag": "#"}, "kwargs.tag: only used with kind: token_tag"),
    ({"path": "two_class", "kind": "classifier", "separator": "#"}, "kwargs.kind: a prm source is two_class or token_tag"),
    ({"path": "two_class", "separator": "#", "step_split": "("}, "kwargs.step_split: '[(]' is not a regular expression"),
    ({"path": "two_class", "separator": "#", "template": "{prompt}{response}"}, r"may only contain the fields \{prompt\} and \{steps\}"),
])
def test_bad_kwargs_name_the_source_and_key(paths, kwargs, message):
    if "path" in kwargs:
        kwargs = {**kwargs, "path": paths[kwargs["path"]]}
    reward = RewardConfig(sources=[RewardSourceConfig(), RewardSourceConfig(type="prm", kwargs=kwargs)])
    with pytest.raises(ConfigError, match=r"reward.sources.1: .*" + message):
        build_source(reward, 1)


# ---- refinement wiring in the combiner ------------------------------------------------------


def test_clip_delta_process_rewards_sit_on_the_step_ends(paths):
    prm = build_reward_source("prm", {"path": paths["two_class"], "separator": "#"})
    verifier = PerSampleRuleSource(lambda response, truth: float(response == truth))
    batch = response_batch(PROMPTS, RESPONSES).set("ground_truth", ["nope", "12", "2"])
    process = ProcessRewardConfig(refine="clip_delta", eta=0.95, alpha=2.0)
    result = RewardCombiner([WeightedSource("acc", 1.0, verifier), WeightedSource("prm", 0.5, prm)], process).evaluate(batch)

    steps = prm.score(batch)
    expected = torch.zeros_like(batch["response_mask"], dtype=torch.float32)
    for row, (row_scores, row_ends) in enumerate(zip(steps.step_scores, steps.step_ends)):
        expected[row, row_ends] = 2.0 * 0.5 * clip_delta(row_scores, 0.95)
    torch.testing.assert_close(result.process_token_rewards, expected)
    assert expected[0].count_nonzero() > 0  # eta above the scores: the clip bites
    assert result.outcome_scores.tolist() == [0.0, 1.0, 0.0]
    torch.testing.assert_close(result.scores, result.outcome_scores + expected.sum(-1))
    assert result.per_source["prm"].tolist() == steps.scores.tolist()  # logged, not added
    assert result.metrics["reward/prm/process_return_mean"] == pytest.approx(expected.sum(-1).mean().item())


def test_delta_return_of_a_response_is_its_first_step_score(paths):
    prm = build_reward_source("prm", {"path": paths["two_class"], "separator": "#"})
    batch = response_batch(PROMPTS[:1], RESPONSES[:1])
    result = RewardCombiner([WeightedSource("prm", 1.0, prm)], ProcessRewardConfig(refine="delta")).evaluate(batch)
    first = prm.score(batch).step_scores[0]
    assert result.scores.item() == pytest.approx(first[0].item(), abs=1e-6)  # delta telescopes to s_1
    assert torch.equal(result.process_token_rewards[0, [7, 16, 23]], delta(first))


def test_chat_template_places_the_steps_in_the_assistant_turn(paths):
    source = build_reward_source("prm", {"path": paths["two_class"], "separator": "#", "chat_template": True, "system_prompt": "S"})
    output = source.score(response_batch(["1+1="], ["1+1=2\n\nso 2"]))
    text = "<|system|>S<|end|><|user|>1+1=<|end|><|assistant|>1+1=2#so 2#<|end|>"
    torch.testing.assert_close(output.step_scores[0], manual_probs(paths["two_class"], text, "#", "two_class"), atol=1e-6, rtol=1e-5)
