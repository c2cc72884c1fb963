"""`VLLMRolloutEngine.generate_steps` on a tiny Llama with sharpened weights: the greedy steps of
the HF engine for every kind of delimiter (a blank line, one character, two characters, a
lookahead that no token can be ruled out for), greedy steps one after another are vLLM's greedy
response, k sampled steps per request; skipped where vLLM is not installed."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

pytest.importorskip("vllm")
pytestmark = pytest.mark.slow  # a vLLM engine per test module: about 10 s

import re  # noqa: E402
from collections import Counter  # noqa: E402

import torch  # noqa: E402
from tiny_helpers import sharpen_weights  # noqa: E402

from rlhf.data.prompts import prompt_batch  # noqa: E402
from rlhf.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402
from rlhf.rollout.base import SamplingParams, StepPrompt  # noqa: E402
from rlhf.rollout.hf import HFRolloutEngine  # noqa: E402
from rlhf.rollout.vllm_engine import VLLMRolloutEngine  # noqa: E402

PROMPTS = ["1+2=", "10+20+30=", "7+45=", "999+1=", "5+5=", "12+345="]
GREEDY = SamplingParams(greedy=True, max_new_tokens=24)


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """(vLLM engine, HF engine) on the same sharpened tiny checkpoint."""
    path = str(build_tiny_model(tmp_path_factory.mktemp("policy"), seed=0))
    model = sharpen_weights(load_causal_lm(path, torch.device("cpu")), seed=0)
    model.save_pretrained(path)
    tokenizer = load_tokenizer(path)
    engine = VLLMRolloutEngine(path, tokenizer, max_model_len=128, kv_cache_gb=1 / 16, seed=0)
    yield engine, HFRolloutEngine(model.eval(), tokenizer)
    engine.close()


@pytest.fixture(scope="module")
def requests(engines):
    tokenizer = engines[0].tokenizer
    return [StepPrompt(tuple(tokenizer(text, add_special_tokens=False)["input_ids"])) for text in PROMPTS]


@pytest.fixture(scope="module")
def delimiters(engines):
    """Delimiters the greedy responses hold: their most common character (after the first),
    two characters of one response, and a lookahead before that character."""
    hf = engines[1]
    texts = hf.generate(prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], hf.tokenizer), GREEDY)["response_text"]
    common = Counter(ch for text in texts for ch in text[1:]).most_common(1)[0][0]
    return {"char": re.escape(common), "pair": re.escape(texts[0][3:5]), "lookahead": f"(?={re.escape(common)})"}


@pytest.mark.parametrize("kind", ["blank_line", "char", "pair", "lookahead"])
def test_greedy_steps_are_those_of_the_hf_engine(engines, requests, delimiters, kind):
    engine, hf = engines
    delimiter = delimiters.get(kind)
    steps = engine.generate_steps(requests, 1, GREEDY, delimiter)
    assert steps == hf.generate_steps(requests, 1, GREEDY, delimiter)
    if delimiter is not None:
        assert any(not step.ended for [step] in steps), "the test needs steps ended by the delimiter"


def test_greedy_steps_one_after_another_are_the_greedy_response(engines, requests, delimiters):
    engine = engines[0]
    whole = engine.generate(prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], engine.tokenizer), GREEDY)
    for row, request in enumerate(requests):
        prefix, steps = (), []
        while not steps or not steps[-1].ended:
            [[step]] = engine.generate_steps([StepPrompt(request.prompt_ids, prefix)], 1, GREEDY, delimiters["char"])
            steps.append(step)
            prefix += step.token_ids
        assert list(prefix) == whole["response_ids"][row][whole["response_mask"][row].bool()].tolist()


def test_k_sampled_steps_per_request_end_at_the_delimiter_or_the_solution(engines, requests, delimiters):
    engine = engines[0]
    engine.set_seed(1)
    delimiter, eos = delimiters["char"], engine.tokenizer.eos_token_id
    out = engine.generate_steps(requests, 4, SamplingParams(max_new_tokens=24), delimiter)
    assert [len(steps) for steps in out] == [4] * len(PROMPTS)
    assert all(len({step.token_ids for step in steps}) > 1 for steps in out), "sampled steps differ"
    steps = [step for request in out for step in request]
    for step in steps:
        text = engine.tokenizer.decode(step.token_ids, skip_special_tokens=True)
        assert step.num_tokens == len(step.token_ids)
        if not step.ended:  # the delimiter is at the end, after text, and nowhere before
            assert re.search(delimiter, text.lstrip()[1:]).end() == len(text.lstrip()) - 1
    at_eos = [step for step in steps if step.token_ids[-1] == eos]
    assert at_eos and all(step.ended for step in at_eos), "the test needs steps ended by EOS"
    assert any(not step.ended for step in steps) and any(step.ended and step.token_ids[-1] != eos for step in steps)


def test_a_step_ends_the_solution_at_the_engines_max_model_len(engines, requests):
    engine = engines[0]
    prompt = requests[0].prompt_ids
    prefix = tuple(engine.tokenizer("ab" * 60, add_special_tokens=False)["input_ids"])  # 4 + 120 of 128 tokens
    [[step]] = engine.generate_steps([StepPrompt(prompt, prefix)], 1, SamplingParams(greedy=True, max_new_tokens=200), "~~~~")
    assert step.ended and len(prompt) + len(prefix) + len(step.token_ids) == 128
