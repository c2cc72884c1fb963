"""Tiny randomly initialised Llama models, for offline tests and CPU smoke runs.

``build_tiny_model`` writes a standard Hugging Face checkpoint (``config.json``,
``generation_config.json``, ``model.safetensors`` and the character tokenizer of
``rlhf.models.tokenizer``), so every engine loads it exactly like a real model:
``AutoModelForCausalLM.from_pretrained(out_dir)`` and ``AutoTokenizer.from_pretrained(out_dir)``,
with no network access. At the defaults the model has about 0.34M parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

from rlhf.models.tokenizer import CHARACTERS, SPECIAL_TOKENS, build_char_tokenizer


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
    """A small Llama configuration with tied input/output embeddings.

    Args:
        vocab_size: number of token ids (the tokenizer's ``len``).
        pad_token_id: id of the padding token.
        bos_token_id: id of the beginning-of-sequence token.
        eos_token_id: id of the end-of-sequence token.
        hidden_size: width of the residual stream; must be divisible by ``num_heads``.
        num_layers: number of decoder layers.
        num_heads: attention heads (as many key/value heads: plain multi-head attention).
        intermediate_size: width of the SwiGLU feed-forward layer.
        max_position_embeddings: longest sequence the rotary embedding is set up for.
    """
    if hidden_size % num_heads != 0:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=pad_token_id,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        tie_word_embeddings=True,
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
) -> Path:
    """Randomly initialise a tiny Llama and save it with the char tokenizer to ``out_dir``.

    The same ``seed`` (and sizes) always gives identical weights.

    Args:
        out_dir: directory to write; created if missing, existing files are overwritten.
        hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings:
            see ``tiny_llama_config``.
        seed: seed of the random initialisation.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_char_tokenizer()
    tokenizer.model_max_length = max_position_embeddings
    config = tiny_llama_config(
        len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    # fork_rng keeps the caller's global RNG state untouched by our seeding.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    # Explicit pad/eos ids stop generate() from warning "Setting pad_token_id to eos_token_id".
    # No max_length here: callers pass max_new_tokens, and setting both makes generate() warn.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_path)  # safetensors is the default format
    tokenizer.save_pretrained(out_path)
    return out_path


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
