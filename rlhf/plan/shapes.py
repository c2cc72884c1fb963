"""Shapes of Llama/Qwen-style decoders and their exact parameter counts.

A :class:`ModelShape` holds what the memory estimate needs: widths, depths, head counts, the
vocabulary, and the few architectural switches that change the parameter count (biases,
Qwen3's per-head q/k norms, tied embeddings). :func:`load_shape` reads it from a checkpoint's
``config.json`` (local directory or hub cache, never the network) or, failing that, from
:data:`KNOWN_MODELS`, a small table of the hub models our recipes name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rlhf.config.errors import ConfigError


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer (Llama, Qwen2, Qwen3, Mistral layout)."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    qkv_bias: bool = False
    """q, k and v projections carry a bias (Qwen2 always; Llama/Qwen3 when attention_bias)."""
    o_bias: bool = False
    """The output projection carries a bias (Llama/Qwen3 attention_bias)."""
    mlp_bias: bool = False
    """gate, up and down projections carry a bias (Llama mlp_bias)."""
    qk_norm: bool = False
    """Per-head RMSNorm on queries and keys (Qwen3)."""
    head_params: int | None = None
    """Parameters of a scoring head that replaces the LM head (reward models); None: an LM head."""
    source: str = ""
    """Where the shape came from: a config.json path or 'built-in table'."""


def decoder_parameters(shape: ModelShape) -> int:
    """Parameters of the embeddings, all decoder layers and the final norm (no output head).

    Per layer: q (h x H*d), k and v (h x K*d each), o (H*d x h), optional biases, Qwen3's two
    head_dim norms, a SwiGLU MLP (3 x h x I, optional biases) and two RMSNorms of width h.
    """
    h, d = shape.hidden_size, shape.head_dim
    q_width, kv_width = shape.num_heads * d, shape.num_kv_heads * d
    attention = h * q_width + 2 * h * kv_width + q_width * h
    attention += (q_width + 2 * kv_width) if shape.qkv_bias else 0
    attention += h if shape.o_bias else 0
    attention += 2 * d if shape.qk_norm else 0
    mlp = 3 * h * shape.intermediate_size + ((2 * shape.intermediate_size + h) if shape.mlp_bias else 0)
    layer = attention + mlp + 2 * h
    return shape.vocab_size * h + shape.num_layers * layer + h


def causal_lm_parameters(shape: ModelShape) -> int:
    """Parameters of the causal LM: the decoder plus the LM head unless it is tied."""
    head = 0 if shape.tie_word_embeddings else shape.vocab_size * shape.hidden_size
    return decoder_parameters(shape) + head


def lora_parameters(shape: ModelShape, rank: int, target_modules: list[str]) -> int:
    """Parameters of LoRA adapters (Hu et al. 2021): rank x (in + out) per adapted projection.

    Only the standard projection names count (q/k/v/o_proj, gate/up/down_proj; `all-linear`
    means all seven): other names are custom and unknown to the table."""
    h, d, i = shape.hidden_size, shape.head_dim, shape.intermediate_size
    q_width, kv_width = shape.num_heads * d, shape.num_kv_heads * d
    sizes = {"q_proj": (h, q_width), "k_proj": (h, kv_width), "v_proj": (h, kv_width), "o_proj": (q_width, h),
             "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}
    names = set(sizes) if "all-linear" in target_modules else {name.rsplit(".", 1)[-1] for name in target_modules}
    return shape.num_layers * sum(rank * (fan_in + fan_out) for name, (fan_in, fan_out) in sizes.items() if name in names)


def scorer_parameters(shape: ModelShape, num_outputs: int = 1, bias: bool = True) -> int:
    """Parameters of a decoder with a scoring head (value model, reward model) and no LM head.

    ``shape.head_params`` wins when set (a head that is not one linear layer); otherwise the
    head is one ``Linear(hidden_size, num_outputs)``.
    """
    if shape.head_params is not None:
        return decoder_parameters(shape) + shape.head_params
    head = shape.hidden_size * num_outputs + (num_outputs if bias else 0)
    return decoder_parameters(shape) + head


def shape_from_hf_config(config: Any, source: str = "") -> ModelShape:
    """The :class:`ModelShape` of a Hugging Face ``PretrainedConfig`` (or any object with its
    attributes). Qwen2 has q/k/v biases; Qwen3 adds q/k norms; Llama-like models read
    ``attention_bias`` and ``mlp_bias``. A multimodal config's ``text_config`` is used."""
    config = getattr(config, "text_config", None) or config
    model_type = getattr(config, "model_type", "llama")
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    attention_bias = bool(getattr(config, "attention_bias", False))
    return ModelShape(
        hidden_size=config.hidden_size, num_layers=config.num_hidden_layers, num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads, head_dim=head_dim,
        intermediate_size=config.intermediate_size, vocab_size=config.vocab_size,
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or attention_bias,
        o_bias=model_type != "qwen2" and attention_bias,
        mlp_bias=bool(getattr(config, "mlp_bias", False)),
        qk_norm=model_type.startswith("qwen3"), source=source,
    )


def _qwen2(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int, vocab: int, tied: bool) -> ModelShape:
    return ModelShape(hidden, layers, heads, kv_heads, hidden // heads, intermediate, vocab, tied,
                      qkv_bias=True, source="built-in table")


# Values copied by hand from each model's public config.json on the Hugging Face hub (not
# fetched by this code). Used only when the real config is neither local nor in the hub cache.
KNOWN_MODELS: dict[str, ModelShape] = {
    "Qwen/Qwen2.5-0.5B-Instruct": _qwen2(896, 24, 14, 2, 4864, 151936, tied=True),
    "Qwen/Qwen2.5-1.5B-Instruct": _qwen2(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Qwen/Qwen2.5-7B-Instruct": _qwen2(3584, 28, 28, 4, 18944, 152064, tied=False),
    "Qwen/Qwen2.5-Math-1.5B-Instruct": _qwen2(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Qwen/Qwen2.5-Math-1.5B": _qwen2(1536, 28, 12, 2, 8960, 151936, tied=True),
    "Qwen/Qwen2.5-Math-7B": _qwen2(3584, 28, 28, 4, 18944, 152064, tied=False),
    # Qwen2ForProcessRewardModel: no LM head; score = Linear(h, h) -> ReLU -> Linear(h, 2)
    "Qwen/Qwen2.5-Math-PRM-7B": replace(
        _qwen2(3584, 28, 28, 4, 18944, 152064, tied=False), head_params=3584 * 3584 + 3584 + 3584 * 2 + 2),
    # Qwen3ForSequenceClassification: head_dim 128 is set explicitly (16 x 128 != 1024)
    "Skywork/Skywork-Reward-V2-Qwen3-0.6B": ModelShape(
        1024, 28, 16, 8, 128, 3072, 151936, True, qk_norm=True, head_params=1024, source="built-in table"),
}
"""Shapes of the hub models the shipped recipes name (public config.json values)."""


def load_shape(path: str, key: str, trust_remote_code: bool = False) -> ModelShape:
    """The shape of the model at `path`: its config.json from a local directory or the hub
    cache (offline), else :data:`KNOWN_MODELS`. Raises ConfigError naming `key` otherwise."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True, trust_remote_code=trust_remote_code)
        return shape_from_hf_config(config, source=f"config.json of {path}")
    except (OSError, ValueError) as error:
        if path in KNOWN_MODELS:
            return KNOWN_MODELS[path]
        raise ConfigError(
            f"{key}: no config.json for {path!r} locally or in the Hugging Face cache, and it is not in "
            f"rlhf plan's table of known models ({', '.join(KNOWN_MODELS)}); download it first, e.g. "
            f"`huggingface-cli download {path} config.json` ({type(error).__name__})"
        ) from None
