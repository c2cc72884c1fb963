"""`HFRolloutEngine.generate_steps`: steps end right after the delimiter, continue prefixes as
token ids (greedy steps one after another are the greedy response), EOS and the length cap end
the solution, k samples per request."""

import re

import pytest
import torch
from step_models import step_model

from rlhf.data.prompts import prompt_batch
from rlhf.rewards.steps import BLANK_LINE
from rlhf.rollout.base import SamplingParams, StepPrompt
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.search.beam import Step

PROMPTS = ["0+14=", "84+25=", "7+3=", "12+34="]


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """The engine on a model writing lines of 5 characters, each followed by a blank line."""
    model, tokenizer = step_model(tmp_path_factory.mktemp("steps") / "model")
    return HFRolloutEngine(model, tokenizer)


@pytest.fixture(scope="module")
def eos_engine(tmp_path_factory):
    """The same model with a raised EOS logit: sampled steps often end the solution."""
    model, tokenizer = step_model(tmp_path_factory.mktemp("eos") / "model", eos_bias=3.0)
    return HFRolloutEngine(model, tokenizer)


def ids(tokenizer, text):
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


def greedy_by_steps(engine, prompt, max_new_tokens, delimiter=None):
    """Greedy steps, each continuing the previous ones as token ids, until one ends."""
    prefix, steps = (), []
    while not steps or not steps[-1].ended:
        [[step]] = engine.generate_steps([StepPrompt(prompt, prefix)], 1, SamplingParams(greedy=True, max_new_tokens=max_new_tokens), delimiter)
        steps.append(step)
        prefix += step.token_ids
    return steps


def test_a_step_ends_right_after_the_blank_line_that_follows_its_text(engine):
    tokenizer = engine.tokenizer
    requests = [StepPrompt(ids(tokenizer, text)) for text in PROMPTS]
    torch.manual_seed(0)
    for steps in engine.generate_steps(requests, 3, SamplingParams(max_new_tokens=40)):
        for step in steps:
            text = tokenizer.decode(step.token_ids)
            assert not step.ended and step.num_tokens == len(step.token_ids)
            # text, then the blank line, and nothing after it; no blank line after text before it
            assert text.endswith("\n\n") and text.strip() and re.search(BLANK_LINE, text.strip()) is None


def test_greedy_steps_one_after_another_are_the_greedy_response(engine):
    tokenizer = engine.tokenizer
    whole = engine.generate(prompt_batch([{"prompt": text, "ground_truth": "0"} for text in PROMPTS], tokenizer),
                            SamplingParams(greedy=True, max_new_tokens=24))
    for row, text in enumerate(PROMPTS):
        steps = greedy_by_steps(engine, ids(tokenizer, text), 24)
        response = whole["response_ids"][row][whole["response_mask"][row].bool()].tolist()
        assert [token for step in steps for token in step.token_ids] == response
        assert len(steps) > 2 and [step.ended for step in steps] == [False] * (len(steps) - 1) + [True]
        assert sum(step.num_tokens for step in steps) == 24  # the last step reached the cap


def test_a_multi_token_custom_delimiter(engine):
    tokenizer = engine.tokenizer
    prompt = ids(tokenizer, PROMPTS[0])
    [line, *_] = greedy_by_steps(engine, prompt, 24)
    word = tokenizer.decode(line.token_ids).strip()[1:3]  # two characters inside the first line
    [[step]] = engine.generate_steps([StepPrompt(prompt)], 1, SamplingParams(greedy=True, max_new_tokens=24), re.escape(word))
    assert not step.ended and tokenizer.decode(step.token_ids).endswith(word)
    assert list(step.token_ids) == list(line.token_ids[: len(step.token_ids)])


def test_eos_ends_the_solution_and_stays_in_its_step(eos_engine):
    tokenizer = eos_engine.tokenizer
    torch.manual_seed(0)
    steps = [step for request in eos_engine.generate_steps([StepPrompt(ids(tokenizer, text)) for text in PROMPTS], 4, SamplingParams(max_new_tokens=40))
             for step in request]
    at_eos = [step for step in steps if step.token_ids and step.token_ids[-1] == tokenizer.eos_token_id]
    assert at_eos and len(at_eos) < len(steps), "the test needs steps ended by EOS and by the delimiter"
    assert all(step.ended and step.num_tokens == len(step.token_ids) for step in at_eos)
    assert all(tokenizer.eos_token_id not in step.token_ids[:-1] for step in steps)


def test_the_length_cap_counts_the_prefix(engine):
    tokenizer = engine.tokenizer
    prompt = ids(tokenizer, PROMPTS[0])
    first = greedy_by_steps(engine, prompt, 40)[0]
    cap = len(first.token_ids) + 2
    [[capped], [exhausted]] = engine.generate_steps([StepPrompt(prompt, first.token_ids), StepPrompt(prompt, first.token_ids * 2)], 1,
                                                    SamplingParams(greedy=True, max_new_tokens=cap))
    assert capped.ended and len(capped.token_ids) == 2
    assert exhausted == Step((), True, 0)  # the prefix is already past the cap: nothing to generate


def test_k_samples_per_request_in_request_order(engine):
    tokenizer = engine.tokenizer
    prompt = ids(tokenizer, PROMPTS[1])
    prefix = greedy_by_steps(engine, prompt, 40)[0].token_ids
    requests = [StepPrompt(prompt), StepPrompt(prompt, prefix), StepPrompt(ids(tokenizer, PROMPTS[2]))]
    torch.manual_seed(0)
    out = engine.generate_steps(requests, 5, SamplingParams(max_new_tokens=40))
    assert [len(steps) for steps in out] == [5, 5, 5]
    assert all(len({step.token_ids for step in steps}) > 1 for steps in out), "sampled steps differ"
    # a step after the prefix starts where the model's 7-token period puts it: 5 characters, blank line
    assert all(len(step.token_ids) == 7 for step in out[1])


def test_micro_batches_give_the_steps_of_one_call(engine):
    tokenizer = engine.tokenizer
    requests = [StepPrompt(ids(tokenizer, text)) for text in PROMPTS]
    greedy = SamplingParams(greedy=True, max_new_tokens=30)
    together = engine.generate_steps(requests, 2, greedy)
    engine.micro_batch_size = 3
    try:
        assert engine.generate_steps(requests, 2, greedy) == together
    finally:
        engine.micro_batch_size = 0


@pytest.mark.parametrize("k, prompt, message", [(0, (5,), "k must be a whole number >= 1"), (2, (), "request 0 has an empty prompt")])
def test_bad_requests_are_refused(engine, k, prompt, message):
    with pytest.raises(ValueError, match=message):
        engine.generate_steps([StepPrompt(prompt)], k, SamplingParams())
