"""Tiny randomly initialised Llama (or Qwen2) models, for offline tests and CPU smoke runs.

``build_tiny_model`` writes a standard Hugging Face checkpoint (``config.json``,
``generation_config.json``, ``model.safetensors`` and the character tokenizer of
``rlhf.models.tokenizer``), so every engine loads it exactly like a real model:
``AutoModelForCausalLM.from_pretrained(out_dir)`` and ``AutoTokenizer.from_pretrained(out_dir)``,
with no network access. At the defaults the model is a Llama of about 0.34M parameters; the
options also build random models of real shapes (e.g. a Qwen2.5 layout whose embedding is
padded to the real vocabulary, so logits have their real size) for benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from rlhf.models.tokenizer import CHARACTERS, SPECIAL_TOKENS, build_char_tokenizer

MODEL_TYPES: dict[str, tuple[type[PretrainedConfig], type[torch.nn.Module]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    # Qwen2 differs from Llama by its q/k/v biases (the config class sets them)
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}
"""Architectures ``build_tiny_model`` can build: model_type -> (config class, model class)."""


def tiny_llama_config(
    vocab_size: int,
    *,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
    max_position_embeddings: int = 128,
) -> LlamaConfig:
    """A small Llama configuration with tied input/output embeddings and plain multi-head
    attention (see ``tiny_decoder_config`` for the arguments)."""
    return tiny_decoder_config(
        vocab_size, pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id,
        hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
    )


def tiny_decoder_config(
    vocab_size: int,
    *,
    pad_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    model_type: str = "llama",
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_key_value_heads: int | None = None,
    intermediate_size: int = 256,
    max_position_embeddings: int = 128,
    tie_word_embeddings: bool = True,
) -> PretrainedConfig:
    """A decoder configuration of the `model_type` architecture.

    Args:
        vocab_size: number of token ids (rows of the embedding and of the LM head).
        pad_token_id: id of the padding token.
        bos_token_id: id of the beginning-of-sequence token.
        eos_token_id: id of the end-of-sequence token.
        model_type: a key of ``MODEL_TYPES`` ('llama' or 'qwen2').
        hidden_size: width of the residual stream; must be divisible by ``num_heads``.
        num_layers: number of decoder layers.
        num_heads: attention (query) heads.
        num_key_value_heads: key/value heads (grouped-query attention); must divide
            ``num_heads``. None: as many as ``num_heads`` (plain multi-head attention).
        intermediate_size: width of the SwiGLU feed-forward layer.
        max_position_embeddings: longest sequence the rotary embedding is set up for.
        tie_word_embeddings: the LM head shares the input embedding's weights.
    """
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown model_type {model_type!r}; valid: {', '.join(MODEL_TYPES)}")
    if hidden_size % num_heads != 0:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )
    key_value_heads = num_heads if num_key_value_heads is None else num_key_value_heads
    if key_value_heads < 1 or num_heads % key_value_heads != 0:
        raise ValueError(f"num_key_value_heads ({key_value_heads}) must divide num_heads ({num_heads})")
    config_class = MODEL_TYPES[model_type][0]
    return config_class(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=key_value_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=tie_word_embeddings,
        # Saved into config.json so that loading with the default dtype="auto" gives float32.
        dtype="float32",
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 256,
    max_position_embeddings: int = 128,
    seed: int = 0,
    model_type: str = "llama",
    num_key_value_heads: int | None = None,
    vocab_size: int | None = None,
    tie_word_embeddings: bool = True,
) -> Path:
    """Randomly initialise a decoder and save it with the char tokenizer to ``out_dir``.

    The same ``seed`` (and sizes) always gives identical weights.

    Args:
        out_dir: directory to write; created if missing, existing files are overwritten.
        hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings,
        model_type, num_key_value_heads, tie_word_embeddings: see ``tiny_decoder_config``.
        seed: seed of the random initialisation.
        vocab_size: rows of the embedding and LM head; None: the tokenizer's length. A larger
            value pads them to a real model's vocabulary (the tokenizer never produces the
            extra ids; a random model may sample them, and they decode to nothing).

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_char_tokenizer()
    tokenizer.model_max_length = max_position_embeddings
    if vocab_size is not None and vocab_size < len(tokenizer):
        raise ValueError(f"vocab_size ({vocab_size}) must be at least the tokenizer's {len(tokenizer)} tokens")
    config = tiny_decoder_config(
        len(tokenizer) if vocab_size is None else vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        model_type=model_type,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
    )
    save_with_tokenizer(random_model(config, model_type, seed), tokenizer, out_path)
    return out_path


def random_model(config, model_type: str, seed: int) -> torch.nn.Module:
    """A `model_type` causal LM of `config`, initialised from `seed` (the caller's global RNG
    state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODEL_TYPES[model_type][1](config)


def save_with_tokenizer(model: torch.nn.Module, tokenizer, out_path: Path) -> None:
    """Save `model` (safetensors) with a generation config naming the tokenizer's special ids,
    and `tokenizer`, into `out_path`."""
    # Explicit pad/eos ids stop generate() from warning "Setting pad_token_id to eos_token_id".
    # No max_length here: callers pass max_new_tokens, and setting both makes generate() warn.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_path)  # safetensors is the default format
    tokenizer.save_pretrained(out_path)


def tiny_model_mismatch(directory: str | Path, *, hidden_size: int, num_layers: int, num_heads: int,
                        intermediate_size: int, max_position_embeddings: int) -> str | None:
    """Why `directory` does not hold the tiny model ``build_tiny_model`` writes with these
    sizes, or None when it does (any seed: the weights are not compared).

    The model is recognised by its files (config, weights, tokenizer) and by its
    ``config.json``: a tied-embedding Llama with exactly these sizes over the character
    tokenizer's vocabulary. Reading that file is all it costs.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return "it is not a directory" if directory.exists() else "it does not exist"
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json") if not (directory / name).is_file()]
    if missing:
        return f"it has no {', '.join(missing)}"
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        return f"its config.json cannot be read ({error})"
    if not isinstance(config, dict):
        return "its config.json is not a JSON object"
    expected = {
        "model_type": "llama", "hidden_size": hidden_size, "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
        "num_key_value_heads": num_heads, "intermediate_size": intermediate_size, "max_position_embeddings": max_position_embeddings,
        "vocab_size": len(SPECIAL_TOKENS) + len(CHARACTERS), "tie_word_embeddings": True,
    }
    differences = [f"{name} {config.get(name)!r} (the tiny model's: {value!r})" for name, value in expected.items() if config.get(name) != value]
    return f"its config.json has {', '.join(differences)}" if differences else None


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in model.parameters())
