"""Memory arithmetic against hand-computed values."""

import pytest

from rlhf.plan.memory import (
    activation_bytes,
    kv_cache_bytes,
    logits_bytes,
    train_state_bytes,
)


@pytest.mark.parametrize(("stage", "weights", "grads", "optimizer"), [
    (0, 2.0, 2.0, 12.0),    # bf16 weights and grads, fp32 master + 2 moments
    (1, 2.0, 2.0, 1.5),     # optimizer state / 8
    (2, 2.0, 0.25, 1.5),    # + gradients / 8
    (3, 0.25, 0.25, 1.5),   # + weights / 8
])
def test_zero_sharding_1b_bf16_8_devices(stage, weights, grads, optimizer):
    state = train_state_bytes(10**9, 2, stage, 8)
    assert (state.weights / 1e9, state.gradients / 1e9, state.optimizer / 1e9) == (weights, grads, optimizer)
    assert state.host_weights == state.host_optimizer == 0


def test_fp32_weights_have_no_master_copy():
    state = train_state_bytes(10**9, 4, 0, 1)
    assert (state.weights + state.gradients + state.optimizer) / 1e9 == 16.0


def test_offload_moves_optimizer_and_stage3_weights_to_host():
    state = train_state_bytes(10**9, 2, 3, 8, offload_optimizer=True, offload_params=True)
    assert (state.weights, state.optimizer) == (0.0, 0.0)
    assert (state.host_weights / 1e9, state.host_optimizer / 1e9, state.gradients / 1e9) == (0.25, 1.5, 0.25)
    # params offload applies to stage 3 only
    assert train_state_bytes(10**9, 2, 2, 8, offload_params=True).weights == 2e9


def test_kv_cache_by_hand():
    # Qwen2.5-1.5B: 28 layers, 2 kv heads of 128, bf16; 128 sequences x 1024 tokens
    expected = 2 * 28 * 2 * 128 * 2 * 128 * 1024
    assert kv_cache_bytes(128 * 1024, 28, 2, 128, 2) == expected == 3.5 * 2**30
    assert kv_cache_bytes(128 * 1024, 28, 2, 128, 2, tensor_parallel=2) == expected / 2


def test_activations_and_checkpointing():
    tokens, layers, h, kv, inter = 10, 3, 8, 4, 16
    per_layer = tokens * (7 * h + 3 * kv + 4 * inter) * 2
    assert activation_bytes(tokens, layers, h, kv, inter, 2, checkpointing=False) == layers * per_layer
    assert activation_bytes(tokens, layers, h, kv, inter, 2, checkpointing=True) == layers * tokens * h * 2 + per_layer
    assert logits_bytes(tokens, 100) == 2 * tokens * 100 * 4


def test_a_token_budget_caps_the_planned_forward():
    from rlhf.config.loader import load_recipe
    from rlhf.plan.layout import forward_tokens

    config = load_recipe(None, ["model.source=tiny", "data.max_prompt_tokens=64"])
    assert forward_tokens(config, 8, 100) == 800
    config.train.max_tokens_per_micro_batch = 300
    assert forward_tokens(config, 8, 100) == 300
    config.train.max_tokens_per_micro_batch = 50  # one full-length sequence still runs alone
    assert forward_tokens(config, 8, 100) == 100
