"""Tiny randomly initialised reward models (ORM / PRM), for offline tests and CPU smoke runs.

``build_tiny_reward_model(out, kind, seed)`` writes a standard Hugging Face checkpoint with the
character tokenizer of ``rlhf.models.tokenizer``, shaped like the reward models the
`reward_model` role serves:

    kind          class                               head                 used by
    classifier    LlamaForSequenceClassification      1 label  (scalar)    ORM `classifier`
                                                                           (Skywork-Reward style)
    two_class     LlamaForTokenClassification         2 labels per token   PRM `two_class`
                                                                           (Qwen2.5-Math-PRM style)
    verdict       LlamaForCausalLM                    the LM head          ORM `verdict`
    token_tag     LlamaForCausalLM                    the LM head          PRM `token_tag`
                                                                           (Math-Shepherd style)

Each loads with its ``AutoModelFor...`` class (``config.json`` names the architecture) and
``AutoTokenizer.from_pretrained(out)``; ``config.pad_token_id`` is set, which a
sequence-classification head needs to find each row's last token. In the char tokenizer every
printable character is one token, so single-character tags and labels ("#", "+", "-") are
single tokens; a multi-character string (" ки", "\\n\\n") is not.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaForCausalLM, LlamaForSequenceClassification, LlamaForTokenClassification

from rlhf.models.tiny import tiny_llama_config
from rlhf.models.tokenizer import build_char_tokenizer

TINY_REWARD_KINDS = {
    "classifier": (LlamaForSequenceClassification, 1),
    "two_class": (LlamaForTokenClassification, 2),
    "verdict": (LlamaForCausalLM, None),
    "token_tag": (LlamaForCausalLM, None),
}
"""kind -> (model class, number of labels of the classification head; None for a causal LM)."""


def build_tiny_reward_model(
    out_dir: str | Path,
    kind: str = "classifier",
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 128,
    max_position_embeddings: int = 256,
) -> Path:
    """Randomly initialise a tiny reward model of `kind` and save it with the char tokenizer.

    The same `kind`, `seed` and sizes always give identical weights; the caller's global RNG
    state is left untouched.

    Args:
        out_dir: directory to write; created if missing, existing files are overwritten.
        kind: `classifier`, `two_class`, `verdict` or `token_tag` (see the module docstring).
        seed: seed of the random initialisation.
        hidden_size, num_layers, num_heads, intermediate_size, max_position_embeddings:
            see ``rlhf.models.tiny.tiny_llama_config``.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    if kind not in TINY_REWARD_KINDS:
        raise ValueError(f"unknown tiny reward model kind {kind!r}; valid: {', '.join(TINY_REWARD_KINDS)}")
    model_class, num_labels = TINY_REWARD_KINDS[kind]
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_char_tokenizer()
    tokenizer.model_max_length = max_position_embeddings
    config = tiny_llama_config(
        len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        intermediate_size=intermediate_size, max_position_embeddings=max_position_embeddings,
    )
    if num_labels is not None:
        config.num_labels = num_labels
        config.tie_word_embeddings = False  # a classification model has no LM head to tie
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        if num_labels is not None:
            # HF initialises the score head with a small std; a wider head spreads the random
            # scores so tests see distinct values per sample and per step.
            torch.nn.init.normal_(model.score.weight, std=0.5)
    model.save_pretrained(out_path)
    tokenizer.save_pretrained(out_path)
    return out_path
