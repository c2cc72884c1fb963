"""The actor's log-probabilities fused with the LM head (rlhf.workers.forward.response_logprobs):
the same log-probabilities, entropy and update as projecting every logit at once, and the
fallback for heads it cannot fuse. The tiny model's logits fit one chunk, so the tests shrink
the chunk (5 tokens) to make the fused path run, in several chunks."""

import copy

import pytest
import torch
from test_actor import add_rl_fields, make_actor
from update_checks import assert_same_update, max_weight_difference

import rlhf.algorithms.head_logprobs as head_logprobs
import rlhf.workers.forward as forward
from rlhf.workers.actor import PolicyLossConfig


@pytest.fixture
def small_chunks(tokenizer_and_model, monkeypatch):
    """Chunks of 5 tokens, and the fused path even for logits this small."""
    _, model = tokenizer_and_model
    monkeypatch.setattr(head_logprobs, "CHUNK_BYTES", 5 * 4 * model.config.vocab_size)
    monkeypatch.setattr(forward, "CHUNK_BYTES", 0)


def test_the_tiny_llama_head_is_fused_and_others_fall_back(tokenizer_and_model, monkeypatch):
    _, model = tokenizer_and_model
    assert forward.fused_head_weight(model) is model.lm_head.weight
    with_bias = copy.deepcopy(model)
    with_bias.lm_head = torch.nn.Linear(with_bias.lm_head.in_features, with_bias.lm_head.out_features, bias=True)
    assert forward.fused_head_weight(with_bias) is None
    monkeypatch.setattr(forward, "FUSED_HEAD_MODELS", frozenset())  # e.g. a model with soft-capped logits
    assert forward.fused_head_weight(model) is None


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_fused_logprobs_and_entropy_equal_the_whole_logits(tokenizer_and_model, batch, temperature, monkeypatch, small_chunks):
    _, model = tokenizer_and_model
    calls = []
    monkeypatch.setattr(forward, "head_logprobs", lambda *args: calls.append(1) or head_logprobs.head_logprobs(*args))
    fused = forward.response_logprobs(model, batch, temperature)
    assert calls, "the fused path did not run"
    monkeypatch.setattr(forward, "FUSED_HEAD_MODELS", frozenset())
    whole = forward.response_logprobs(model, batch, temperature)
    for mine, theirs in zip(fused, whole):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("entropy_coef", [0.0, 0.05])
def test_an_update_through_the_fused_head_equals_the_whole_logits_update(tokenizer_and_model, batch, entropy_coef, monkeypatch, small_chunks):
    """Policy loss, KL and (with entropy_coef) the entropy bonus through the head: the same
    gradients, hence the same AdamW step, on every weight including the head's."""
    _, model = tokenizer_and_model
    batch = add_rl_fields(batch, model)
    loss = PolicyLossConfig(ppo_epochs=1, mini_batch_size=6, micro_batch_size=3, entropy_coef=entropy_coef, kl_coef=0.1)
    fused_model, whole_model = copy.deepcopy(model), copy.deepcopy(model)
    fused = make_actor(fused_model, loss, temperature=0.9)
    fused_metrics = fused.update_policy(batch)
    monkeypatch.setattr(forward, "FUSED_HEAD_MODELS", frozenset())
    whole = make_actor(whole_model, loss, temperature=0.9)
    whole_metrics = whole.update_policy(batch)
    assert max_weight_difference(fused_model, model) > 1e-4
    assert_same_update(whole, fused)
    for key in ("actor/pg_loss", "actor/entropy", "actor/grad_norm"):
        assert fused_metrics[key] == pytest.approx(whole_metrics[key], rel=1e-4), key
