"""`type: orm`: an outcome reward model as a reward source, against manual forwards of tiny models."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RewardConfig, RewardSourceConfig
from rlhf.models.tiny_reward import build_tiny_reward_model
from rlhf.models.tokenizer import build_char_tokenizer
from rlhf.rewards.combine import RewardCombiner, WeightedSource, build_source
from rlhf.rewards.registry import build_reward_source
from rlhf.rewards.rm_format import RMFormatter, tokens_at_chars
from tiny_helpers import response_batch

PROMPTS = ["12+30=", "7+5=", "100+1="]
RESPONSES = ["42", "13 or so", "101"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("orm")
    return {kind: str(build_tiny_reward_model(root / kind, kind, seed=2)) for kind in ("classifier", "verdict")}


def manual_classifier(path, texts, add_special_tokens=True):
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModelForSequenceClassification.from_pretrained(path)
    with torch.no_grad():
        return torch.stack([model(input_ids=torch.tensor([tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"]])).logits[0, 0] for t in texts])


def test_classifier_scores_prompt_plus_response(paths):
    source = build_reward_source("orm", {"path": paths["classifier"], "batch_size": 2})
    output = source.score(response_batch(PROMPTS, RESPONSES))
    expected = manual_classifier(paths["classifier"], [p + r for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(output.scores, expected, atol=1e-5, rtol=1e-5)
    assert output.step_scores is None and not output.is_process
    assert output.metrics["score_mean"] == pytest.approx(expected.mean().item(), abs=1e-5)


def test_template_and_chat_template(paths):
    templated = build_reward_source("orm", {"path": paths["classifier"], "template": "Q: {prompt}\nA: {response}"})
    expected = manual_classifier(paths["classifier"], [f"Q: {p}\nA: {r}" for p, r in zip(PROMPTS, RESPONSES)])
    torch.testing.assert_close(templated.score(response_batch(PROMPTS, RESPONSES)).scores, expected, atol=1e-5, rtol=1e-5)

    chat = build_reward_source("orm", {"path": paths["classifier"], "chat_template": True, "system_prompt": "Judge."})
    tokenizer = AutoTokenizer.from_pretrained(paths["classifier"])
    texts = [tokenizer.apply_chat_template([{"role": "system", "content": "Judge."}, {"role": "user", "content": p},
                                            {"role": "assistant", "content": r}], tokenize=False) for p, r in zip(PROMPTS, RESPONSES)]
    assert texts[0] == "<|system|>Judge.<|end|><|user|>12+30=<|end|><|assistant|>42<|end|>"
    expected = manual_classifier(paths["classifier"], texts, add_special_tokens=False)
    torch.testing.assert_close(chat.score(response_batch(PROMPTS, RESPONSES)).scores, expected, atol=1e-5, rtol=1e-5)


def test_verdict_probability(paths):
    source = build_reward_source("orm", {"path": paths["verdict"], "kind": "verdict", "template": "{prompt}{response}?",
                                         "verdict_token": "Y", "negative_token": "N"})
    tokenizer, model = AutoTokenizer.from_pretrained(paths["verdict"]), AutoModelForCausalLM.from_pretrained(paths["verdict"])
    yes, no = tokenizer.convert_tokens_to_ids(["Y", "N"])
    with torch.no_grad():
        last = torch.stack([model(input_ids=torch.tensor([tokenizer(p + r + "?")["input_ids"]])).logits[0, -1] for p, r in zip(PROMPTS, RESPONSES)])
    expected = last[:, [yes, no]].softmax(-1)[:, 0]
    torch.testing.assert_close(source.score(response_batch(PROMPTS, RESPONSES)).scores, expected, atol=1e-6, rtol=1e-5)


def test_an_orm_is_an_outcome_source_in_the_combiner(paths):
    source = build_reward_source("orm", {"path": paths["classifier"]})
    batch = response_batch(PROMPTS, RESPONSES)
    result = RewardCombiner([WeightedSource("orm", 0.5, source)]).evaluate(batch)
    torch.testing.assert_close(result.scores, 0.5 * source.score(batch).scores)
    assert result.process_token_rewards is None and torch.equal(result.outcome_scores, result.scores)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "kwargs.path: an orm source needs"),
    ({"kind": "two_class"}, "kwargs.kind: an orm source reads a classifier or a verdict"),
    ({"kind": "verdict"}, "kwargs.verdict_token: kind verdict needs"),
    ({"kind": "verdict", "verdict_token": "Yes"}, r"kwargs.verdict_token: 'Yes' must be a single token"),
    ({"verdict_token": "Y"}, "only used with kind: verdict"),
    ({"template": "{question}{response}"}, r"kwargs.template: .* may only contain the fields \{prompt\} and \{response\}"),
    ({"template": "{prompt}"}, r"must contain \{response\} exactly once"),
    ({"template": "{prompt}{response}", "chat_template": True}, "give one of them"),
    ({"system_prompt": "x"}, "kwargs.system_prompt: only used with chat_template"),
    ({"temperature": 1.0}, "unexpected keyword argument 'temperature'"),
])
def test_bad_kwargs_name_the_source_and_key(paths, kwargs, message):
    if kwargs != {}:
        kwargs = {"path": paths["verdict" if kwargs.get("kind") == "verdict" else "classifier"], **kwargs}
    reward = RewardConfig(sources=[RewardSourceConfig(), RewardSourceConfig(type="orm", kwargs=kwargs)])
    with pytest.raises(ConfigError, match=r"reward.sources.1: .*" + message):
        build_source(reward, 1)


def test_formatter_finds_where_the_body_starts():
    formatter = RMFormatter(build_char_tokenizer(), "steps", template="Q {prompt} | {steps} .")
    assert formatter.render("1+1", "a#b#") == ("Q 1+1 | a#b# .", 8)
    ids, positions = formatter.encode(["1+1"], ["a#b#"], [[2, 4]])
    assert positions == [[9, 11]] and ids[0][9] == ids[0][11] == build_char_tokenizer().convert_tokens_to_ids("#")


def test_tokens_at_chars_with_multi_char_tokens_and_special_tokens():
    offsets = [(0, 0), (0, 3), (3, 4), (4, 9), (9, 9)]  # BOS, "abc", "#", "defgh", EOS
    assert tokens_at_chars(offsets, [0, 2, 3, 4, 8]) == [1, 1, 2, 3, 3]


def test_a_reward_model_slower_than_its_timeout_stops_with_a_clear_error(paths):
    from rlhf.workers.reward_model import RewardModelTimeout

    source = build_reward_source("orm", {"path": paths["classifier"], "batch_size": 1, "timeout_s": 1e-4})
    with pytest.raises(RewardModelTimeout, match=r"the classifier reward model .* took longer than kwargs.timeout_s=0.0001 s to score 3 rows"):
        source.score(response_batch(PROMPTS[:3], RESPONSES[:3]))
    with pytest.raises(ValueError, match="kwargs.timeout_s: must be a number of seconds > 0, got 0"):
        build_reward_source("orm", {"path": paths["classifier"], "timeout_s": 0})
