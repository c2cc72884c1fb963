"""Parameter counts from configs equal the parameters of the models those configs build."""

import pytest
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

from rlhf.config.errors import ConfigError
from rlhf.plan.shapes import (
    KNOWN_MODELS,
    causal_lm_parameters,
    load_shape,
    scorer_parameters,
    shape_from_hf_config,
)

SMALL = {"vocab_size": 97, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 8}

CONFIGS = {
    "llama-tied-mha": LlamaConfig(**SMALL, num_key_value_heads=8, tie_word_embeddings=True),
    "llama-untied-gqa": LlamaConfig(**SMALL, num_key_value_heads=2, tie_word_embeddings=False),
    "llama-biases": LlamaConfig(**SMALL, num_key_value_heads=4, attention_bias=True, mlp_bias=True),
    "qwen2-tied-gqa": Qwen2Config(**SMALL, num_key_value_heads=2, tie_word_embeddings=True),
    "qwen2-untied-gqa": Qwen2Config(**SMALL, num_key_value_heads=4, tie_word_embeddings=False),
    "qwen3-head-dim": Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_count_equals_built_model(name):
    config = CONFIGS[name]
    model = AutoModelForCausalLM.from_config(config)
    assert causal_lm_parameters(shape_from_hf_config(config)) == sum(p.numel() for p in model.parameters())


def test_scorer_replaces_lm_head_with_linear():
    from transformers import AutoModelForSequenceClassification

    config = Qwen2Config(**SMALL, num_key_value_heads=2, num_labels=2, tie_word_embeddings=False)
    model = AutoModelForSequenceClassification.from_config(config)
    shape = shape_from_hf_config(config)
    assert scorer_parameters(shape, 2, bias=False) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "expected"), [
    ("Qwen/Qwen2.5-0.5B-Instruct", 494.0e6), ("Qwen/Qwen2.5-7B-Instruct", 7.61e9),
    ("Qwen/Qwen2.5-1.5B-Instruct", 1.54e9), ("Skywork/Skywork-Reward-V2-Qwen3-0.6B", 0.596e9),
])
def test_table_gives_published_sizes(name, expected):
    shape = KNOWN_MODELS[name]
    count = causal_lm_parameters(shape) if shape.head_params is None else scorer_parameters(shape)
    assert count == pytest.approx(expected, rel=0.01)


def test_qwen2_5_0_5b_exact():
    # embeddings 151936*896 + 24 layers * 14,912,384 + final norm 896 (tied head)
    assert causal_lm_parameters(KNOWN_MODELS["Qwen/Qwen2.5-0.5B-Instruct"]) == 494_032_768


def test_load_shape_reads_local_config(tmp_path):
    CONFIGS["qwen2-untied-gqa"].save_pretrained(tmp_path)
    shape = load_shape(str(tmp_path), "model.path")
    assert shape == shape_from_hf_config(CONFIGS["qwen2-untied-gqa"], source=shape.source)


def test_load_shape_falls_back_to_table_then_fails_naming_key():
    assert load_shape("Qwen/Qwen2.5-7B-Instruct", "model.path").num_layers == 28
    with pytest.raises(ConfigError, match=r"critic\.path.*no/such-model"):
        load_shape("no/such-model", "critic.path")
