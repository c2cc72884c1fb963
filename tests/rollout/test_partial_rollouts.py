"""Partial rollouts (`rlhf.rollout.versioned`): a generation that takes new weights mid-way
gives valid trajectories, every token tagged with the version that sampled it, and every token
after the switch sampled (and scored) by the new weights alone."""

import copy

import torch
from tiny_helpers import sharpen_weights

from rlhf.data.prompts import prompt_batch
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.decode import decode
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.rollout.versioned import generate_with_versions

PROMPTS = ["0+14=", "84+25=", "49+14=", "98+14=", "7+3=", "12+34="]
GREEDY = SamplingParams(greedy=True, max_new_tokens=10, logprobs=True)


def models(tmp_path):
    """Two tiny models of one architecture with different weights, EOS raised so responses
    have mixed lengths, and the tokenizer."""
    path = build_tiny_model(tmp_path / "model", seed=0)
    tokenizer = load_tokenizer(str(path))
    first = sharpen_weights(load_causal_lm(str(path), torch.device("cpu")).eval(), seed=0)
    second = sharpen_weights(copy.deepcopy(first), seed=1)
    eos = torch.nn.functional.one_hot(torch.tensor(tokenizer.eos_token_id), first.config.vocab_size)
    for model in (first, second):
        model.lm_head.register_forward_hook(lambda module, inputs, output: output + 2.5 * eos)
    return first, second, tokenizer


class Switch:
    """Weights that change once: `newer()` turns True after `after` decoding steps; `refresh()`
    then loads `weights` into the engine and holds version 1."""

    def __init__(self, engine, weights, after: int):
        self.engine, self.weights, self.after = engine, weights, after
        self.steps, self.version = 0, 0

    def newer(self) -> bool:
        self.steps += 1
        return self.version == 0 and self.steps >= self.after

    def refresh(self) -> int:
        if self.version == 0 and self.steps >= self.after:
            self.engine.update_weights(self.weights.named_parameters())
            self.version = 1
        return self.version


def test_without_new_weights_it_is_the_engines_own_generation(tmp_path):
    first, _, tokenizer = models(tmp_path)
    batch = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in PROMPTS], tokenizer)
    engine = HFRolloutEngine(first, tokenizer)
    plain = engine.generate(batch, GREEDY)
    versioned = generate_with_versions(engine, batch, GREEDY, refresh=lambda: 7, newer=lambda: False)
    assert torch.equal(versioned["response_ids"], plain["response_ids"]) and torch.equal(versioned["response_mask"], plain["response_mask"])
    torch.testing.assert_close(versioned["rollout_logprobs"], plain["rollout_logprobs"])
    assert torch.equal(versioned["token_versions"], torch.where(plain["response_mask"].bool(), 7, -1))
    assert versioned["response_text"] == plain["response_text"]


def test_a_pause_with_the_same_weights_changes_no_token(tmp_path):
    first, _, tokenizer = models(tmp_path)
    batch = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in PROMPTS], tokenizer)
    engine = HFRolloutEngine(first, tokenizer)
    plain = engine.generate(batch, GREEDY)
    switch = Switch(engine, copy.deepcopy(first), after=3)
    paused = generate_with_versions(engine, batch, GREEDY, switch.refresh, switch.newer)
    assert switch.version == 1
    assert torch.equal(paused["response_ids"], plain["response_ids"])
    torch.testing.assert_close(paused["rollout_logprobs"], plain["rollout_logprobs"], atol=1e-5, rtol=0)
    lengths = plain["response_mask"].sum(dim=1)
    assert (lengths <= 3).any() and (lengths > 3).any(), "the test needs rows that end before and after the pause"
    for row, length in enumerate(lengths.tolist()):
        expected = [0] * min(length, 3) + [1] * max(0, length - 3) + [-1] * (paused["token_versions"].shape[1] - length)
        assert paused["token_versions"][row].tolist() == expected


def test_tokens_after_new_weights_are_the_new_policys_alone(tmp_path):
    first, second, tokenizer = models(tmp_path)
    batch = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in PROMPTS], tokenizer)
    engine = HFRolloutEngine(copy.deepcopy(first), tokenizer)
    switch = Switch(engine, second, after=2)
    out = generate_with_versions(engine, batch, GREEDY, switch.refresh, switch.newer)
    eos = [tokenizer.eos_token_id]
    assert torch.equal(out["response_mask"], response_mask_from_ids(out["response_ids"], eos))
    for row in range(len(PROMPTS)):
        valid = out["response_mask"][row].bool()
        tokens = out["response_ids"][row][valid]
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()]
        # the first two tokens are the first model's greedy tokens
        head = decode(first, prompt[None], torch.ones(1, len(prompt), dtype=torch.long), GREEDY, eos, tokenizer.pad_token_id)
        assert tokens[:2].tolist() == head.response_ids[0][: min(2, len(tokens))].tolist()
        if len(tokens) <= 2:
            continue
        # the rest: the second model's greedy continuation of prompt + those two tokens ...
        prefix = torch.cat([prompt, tokens[:2]])
        tail = decode(second, prefix[None], torch.ones(1, len(prefix), dtype=torch.long),
                      SamplingParams(greedy=True, max_new_tokens=GREEDY.max_new_tokens - 2, logprobs=True), eos, tokenizer.pad_token_id)
        assert tokens[2:].tolist() == tail.response_ids[0][: len(tokens) - 2].tolist()
        # ... with the second model's logprobs, as a full forward of it scores them
        full = torch.cat([prompt, tokens])
        with torch.no_grad():
            logits = second(full[None]).logits[0, len(prompt) - 1 : -1]
        scored = logits.float().log_softmax(dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
        torch.testing.assert_close(out["rollout_logprobs"][row][valid][2:], scored[2:], atol=1e-4, rtol=0)
        assert out["token_versions"][row][valid].tolist() == [0, 0] + [1] * (len(tokens) - 2)


def test_a_generation_goes_on_from_the_responses_a_snapshot_saved(tmp_path):
    """Paused after 3 steps, its rows' states (as a checkpoint holds them) given to a new call
    as prefixes: the greedy responses, logprobs and versions are those of one uninterrupted call."""
    from rlhf.rollout.versioned import VersionedGeneration

    first, _, tokenizer = models(tmp_path)
    batch = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in PROMPTS], tokenizer)
    engine = HFRolloutEngine(first, tokenizer)
    whole = VersionedGeneration(engine, batch, GREEDY)
    assert whole.run(5, None)
    steps = []
    paused = VersionedGeneration(engine, batch, GREEDY)
    assert not paused.run(5, lambda: steps.append(1) or len(steps) == 3)
    saved = paused.states()
    assert any(state["tokens"] and len(state["tokens"]) == 3 for state in saved)
    resumed = VersionedGeneration(engine, batch, GREEDY, prefixes=saved)
    assert resumed.run(5, None)
    got, expected = resumed.result(), whole.result()
    assert torch.equal(got["response_ids"], expected["response_ids"])
    torch.testing.assert_close(got["rollout_logprobs"], expected["rollout_logprobs"], atol=1e-5, rtol=0)
    assert torch.equal(got["token_versions"], expected["token_versions"])
