"""The networks a reward model is trained from, and the checkpoint it is saved as.

Checkpoint formats (what the `reward_model` role of the RL loop loads):

* **ORM** (kinds `orm_pairs`, `orm_labels`): ``AutoModelForSequenceClassification`` with
  ``num_labels=1``; the score of a sequence is the head's scalar at its last non-pad token
  (``config.pad_token_id`` is set so the model can find it). RL source: ``type: orm``,
  ``kind: classifier``.
* **PRM** (kind `prm`): ``AutoModelForTokenClassification`` with ``num_labels=2``; at each
  step's separator token, softmax index 1 is the probability that the step is good. RL source:
  ``type: prm``, ``kind: two_class``, with the ``separator`` and ``step_split`` recorded below.

Both are saved with their tokenizer, and with ``reward_model.json`` next to ``config.json``::

    {"type": "orm" | "prm", "kind": "classifier" | "two_class",
     "objective": "bradley_terry" | "binary_cross_entropy" | "step_cross_entropy",
     "input": "<how the text is laid out>", "separator": "#", "step_split": null}

(``separator`` and ``step_split`` only for a PRM, to pass as the ``type: prm`` source's kwargs;
``step_split`` null means blank lines, the source's default. The PRM's ``config.json`` also
carries ``step_separator``.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from reward_models.config import RMModelConfig, RMRecipeConfig

INFO_FILE = "reward_model.json"
"""Sidecar file naming the reward model's type, head and step format."""
OBJECTIVES = {"orm_pairs": "bradley_terry", "orm_labels": "binary_cross_entropy", "prm": "step_cross_entropy"}
"""Recipe kind -> training objective recorded in the sidecar."""


def is_prm(kind: str) -> bool:
    """Whether a recipe kind trains a process reward model (token classification)."""
    return kind == "prm"


def load_model_and_tokenizer(config: RMRecipeConfig) -> tuple[torch.nn.Module, object]:
    """The float32 model to train (a tiny one is built first) and its tokenizer with a pad token.

    A checkpoint without the head (e.g. a causal LM) gets a freshly initialised one, seeded by
    ``train.seed``.
    """
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    from rlhf.models.load import load_tokenizer, quiet_transformers

    quiet_transformers()
    path = _model_path(config.model, Path(config.output_dir), config.kind, config.train.seed)
    tokenizer = load_tokenizer(path, config.model.trust_remote_code)
    auto_class, num_labels = ((AutoModelForTokenClassification, 2) if is_prm(config.kind)
                              else (AutoModelForSequenceClassification, 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        model = auto_class.from_pretrained(path, num_labels=num_labels, dtype=torch.float32,
                                           trust_remote_code=config.model.trust_remote_code)
        if config.model.source == "tiny":
            # The tiny builder widens the head (std 0.5) so untrained test models give spread
            # scores; training starts better from the usual small initialisation.
            torch.nn.init.normal_(model.score.weight, std=model.config.initializer_range)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _model_path(model: RMModelConfig, output_dir: Path, kind: str, seed: int) -> str:
    """`model.path`, or a tiny reward model built under ``<output_dir>/init_model``."""
    if model.source == "pretrained":
        return model.path
    from rlhf.models.tiny_reward import build_tiny_reward_model

    tiny = model.tiny
    target = output_dir / "init_model"
    build_tiny_reward_model(
        target, "two_class" if is_prm(kind) else "classifier", seed, hidden_size=tiny.hidden_size,
        num_layers=tiny.num_layers, num_heads=tiny.num_heads, intermediate_size=tiny.intermediate_size,
        max_position_embeddings=tiny.max_position_embeddings,
    )
    return str(target)


def reward_model_info(config: RMRecipeConfig) -> dict:
    """The content of ``reward_model.json`` for a recipe."""
    if is_prm(config.kind):
        return {"type": "prm", "kind": "two_class", "objective": OBJECTIVES[config.kind],
                "input": "prompt + step_1 + separator + ... + step_n + separator",
                "separator": config.steps.separator, "step_split": config.steps.step_split}
    return {"type": "orm", "kind": "classifier", "objective": OBJECTIVES[config.kind],
            "input": "prompt + response (score at the last token)"}


def save_reward_model(model: torch.nn.Module, tokenizer, config: RMRecipeConfig, out_dir: Path) -> Path:
    """Write the trained model, its tokenizer and ``reward_model.json`` to ``out_dir``."""
    info = reward_model_info(config)
    if is_prm(config.kind):
        model.config.step_separator = config.steps.separator
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out_dir
