"""`build_tiny_model`'s options for real shapes: a Qwen2 layout with grouped-query attention and
an embedding padded to Qwen2.5's 151,936-token vocabulary over the 104-token char tokenizer."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from rlhf.models.tiny import build_tiny_model, count_parameters  # noqa: E402
from rlhf.plan.shapes import causal_lm_parameters, shape_from_hf_config  # noqa: E402

VOCAB = 151_936


@pytest.fixture(scope="module")
def qwen2_dir(tmp_path_factory):
    """Toy widths (the embedding alone is 151,936 x 16), the real vocabulary."""
    return build_tiny_model(
        tmp_path_factory.mktemp("qwen2") / "model", model_type="qwen2", hidden_size=16, num_layers=2, num_heads=4,
        num_key_value_heads=2, intermediate_size=32, vocab_size=VOCAB, seed=0,
    )


def test_a_padded_qwen2_with_grouped_query_attention(qwen2_dir):
    model = AutoModelForCausalLM.from_pretrained(qwen2_dir)
    config = model.config
    assert type(model).__name__ == "Qwen2ForCausalLM" and config.model_type == "qwen2"
    assert config.vocab_size == VOCAB and len(AutoTokenizer.from_pretrained(qwen2_dir)) == 104
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as in Qwen2.5-0.5B and -1.5B
    attention = model.model.layers[0].self_attn
    # 4 query heads and 2 key/value heads of head_dim 4; Qwen2's q/k/v carry biases, o does not
    assert (attention.q_proj.out_features, attention.k_proj.out_features, attention.v_proj.out_features) == (16, 8, 8)
    assert attention.q_proj.bias is not None and attention.k_proj.bias is not None and attention.o_proj.bias is None
    assert count_parameters(model) == causal_lm_parameters(shape_from_hf_config(config)) == VOCAB * 16 + 2 * (
        16 * 16 + 16 + 2 * (16 * 8 + 8) + 16 * 16 + 3 * 16 * 32 + 2 * 16) + 16
    logits = model(input_ids=torch.tensor([[20, 21, 22]])).logits
    assert logits.shape == (1, 3, VOCAB)


def test_ids_beyond_the_tokenizer_decode_to_nothing(qwen2_dir):
    """A random model samples ids the char tokenizer never produces: they must not crash decoding."""
    model = AutoModelForCausalLM.from_pretrained(qwen2_dir)
    tokenizer = AutoTokenizer.from_pretrained(qwen2_dir)
    prompt = tokenizer(["1+2="], return_tensors="pt")
    torch.manual_seed(0)
    output = model.generate(**prompt, do_sample=True, max_new_tokens=16, top_k=0)
    response = output[0, prompt["input_ids"].shape[1] :]
    assert (response >= len(tokenizer)).any()  # almost every draw of a random 151,936-way head
    known = [token for token in response.tolist() if token < len(tokenizer)]
    assert tokenizer.decode(response, skip_special_tokens=True) == tokenizer.decode(known, skip_special_tokens=True)
    first, second = tokenizer("ab")["input_ids"]
    assert tokenizer.decode([first, VOCAB - 1, 500, second]) == "ab"


def test_defaults_stay_a_llama_over_the_tokenizer_vocabulary(tmp_path):
    model = AutoModelForCausalLM.from_pretrained(build_tiny_model(tmp_path / "default", seed=0))
    assert model.config.model_type == "llama" and model.config.vocab_size == 104
    assert model.config.num_key_value_heads == model.config.num_attention_heads == 4


@pytest.mark.parametrize("options, message", [
    ({"vocab_size": 50}, "vocab_size (50) must be at least the tokenizer's 104 tokens"),
    ({"num_heads": 4, "num_key_value_heads": 3}, "num_key_value_heads (3) must divide num_heads (4)"),
    ({"model_type": "gpt2"}, "unknown model_type 'gpt2'; valid: llama, qwen2"),
])
def test_bad_options_are_refused(tmp_path, options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_tiny_model(tmp_path / "bad", **options)
