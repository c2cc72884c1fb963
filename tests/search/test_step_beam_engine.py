"""The step beam on a tiny HF policy through `expand_with`: it finishes, its token accounting is
the sum of the sampled steps' lengths, its solution is made of sampled steps, and a beam of one
greedy step is the greedy response."""

import pytest
import torch
from step_models import step_model

from rlhf.data.prompts import prompt_batch
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.search.beam import step_beam
from rlhf.search.expand import expand_with

PROMPT = "12+34="


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A policy writing lines of 5 characters and blank lines, which ends early now and then."""
    model, tokenizer = step_model(tmp_path_factory.mktemp("beam") / "model", eos_bias=1.0)
    return HFRolloutEngine(model, tokenizer)


def digit_share(tokenizer):
    """A toy PRM: the share of digits in a partial solution's text (0 for an empty one)."""
    def score(partials):
        texts = tokenizer.batch_decode([list(partial.token_ids) for partial in partials], skip_special_tokens=True)
        return [sum(ch.isdigit() for ch in text) / max(len(text), 1) for text in texts]
    return score


def test_a_step_beam_over_the_policy_finishes_and_counts_every_sampled_token(engine):
    tokenizer = engine.tokenizer
    prompt = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    expand, sampled = expand_with(engine, prompt, SamplingParams(max_new_tokens=30)), []

    def recording_expand(prefixes, k):
        out = expand(prefixes, k)
        assert [len(steps) for steps in out] == [k] * len(prefixes)
        sampled.extend(step for steps in out for step in steps)
        return out

    torch.manual_seed(0)
    result = step_beam(recording_expand, digit_share(tokenizer), beam_width=2, k=3, token_budget=1000)
    assert result.finished and result.solution.ended
    assert result.cost.generated_tokens == sum(step.num_tokens for step in sampled) > 0
    assert result.cost.samples == result.cost.scored == len(sampled)
    assert result.cost.rounds > 2, "the test needs several rounds of steps"
    # the solution is sampled steps, one after another, and ends at EOS or at the 30-token cap
    step_tokens = {step.token_ids for step in sampled}
    assert all(step in step_tokens for step in result.solution.steps)
    solution = result.solution.token_ids
    assert len(solution) == 30 or (solution[-1] == tokenizer.eos_token_id and len(solution) < 30)


def test_a_beam_of_one_greedy_step_is_the_greedy_response(engine):
    tokenizer = engine.tokenizer
    greedy = SamplingParams(greedy=True, max_new_tokens=30)
    whole = engine.generate(prompt_batch([{"prompt": PROMPT, "ground_truth": "0"}], tokenizer), greedy)
    expand = expand_with(engine, tokenizer(PROMPT, add_special_tokens=False)["input_ids"], greedy)
    result = step_beam(expand, digit_share(tokenizer), beam_width=1, k=1, token_budget=1000)
    assert list(result.solution.token_ids) == whole["response_ids"][0][whole["response_mask"][0].bool()].tolist()
    assert len(result.solution.steps) == result.cost.rounds > 2
    assert result.cost.generated_tokens == len(result.solution.token_ids)


def test_expand_with_needs_a_prompt(engine):
    with pytest.raises(ValueError, match="the prompt is empty"):
        expand_with(engine, [], SamplingParams())
