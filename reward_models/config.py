"""The schema of a reward-model training recipe (`rlhf rm RECIPE [key.sub=value ...]`).

Same rules as the RL recipe (:mod:`rlhf.config.schema`): these dataclasses hold every default,
a recipe YAML only what differs, overrides apply last, and checking is strict (unknown keys
with a did-you-mean, wrong types and values naming the key, exit status 2). Loading reuses
:func:`rlhf.config.loader.load_config`. No torch import here: `rlhf rm --help` stays instant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig, Seed, TinyModelConfig

KINDS = ("orm_pairs", "orm_labels", "prm")
"""orm_pairs: Bradley–Terry on chosen/rejected; orm_labels: BCE on 0/1 labels; prm: per-step labels."""
SYNTHETIC = "synthetic_arithmetic"


@dataclass
class RMModelConfig:
    """The network to train: a tiny random Llama or a pretrained checkpoint (a new head is added)."""

    source: str = "tiny"
    """'tiny': build a random tiny model with the char tokenizer; 'pretrained': load model.path."""
    path: str = ""
    """A local directory or hub name (any causal LM or classifier with its tokenizer)."""
    tiny: TinyModelConfig = field(default_factory=lambda: TinyModelConfig(
        hidden_size=64, intermediate_size=128, max_position_embeddings=64))
    """Shape of the tiny model, used only when model.source is 'tiny'."""
    trust_remote_code: bool = False
    """Allow model code from the checkpoint's repository to run (off unless you trust it)."""


@dataclass
class RMDataConfig:
    """Training and held-out data: synthetic arithmetic, or jsonl files (formats in README)."""

    source: str = SYNTHETIC
    """'synthetic_arithmetic', or the path of a training .jsonl file in the format of `kind`."""
    eval_path: str = ""
    """Held-out .jsonl (same format); empty with a jsonl source: hold out eval_fraction of it."""
    eval_fraction: float = 0.1
    """Share of a jsonl source held out for evaluation when eval_path is empty."""
    train_size: int | None = None
    """Use only the first train_size training examples (null: all)."""
    eval_size: int | None = None
    """Use only the first eval_size held-out examples (null: all)."""
    digits: int = 2
    """Synthetic: digits per operand (2: '07+45=')."""
    test_fraction: float = 0.1
    """Synthetic: share of operand pairs held out (as in builtin:arithmetic; disjoint pairs)."""
    error_fraction: float = 0.5
    """Synthetic orm_labels/prm: share of examples with a corrupted answer or an injected error."""
    seed: Seed = 0
    """Synthetic: seed of the operand split and of the corruptions (0: the RL task's split)."""


@dataclass
class StepFormatConfig:
    """How a PRM sees steps: each step followed by the separator token, labels at separators."""

    separator: str = "#"
    """Inserted after each step; must be a single token of the tokenizer, absent from the text."""
    step_split: str | None = None
    """Regex that cuts a policy response into steps when the PRM scores it in the RL loop (null:
    blank lines, the `type: prm` default); recorded with the model, not used in training."""


@dataclass
class RMTrainConfig:
    """Optimisation (Hugging Face Trainer / TRL RewardTrainer arguments)."""

    lr: float = 1.0e-3
    """Peak learning rate (AdamW), decayed linearly to 0 after warmup."""
    warmup_ratio: float = 0.05
    """Share of the steps spent warming the learning rate up from 0."""
    epochs: float = 1.0
    """Passes over the training data (fractions allowed)."""
    batch_size: int = 32
    """Examples per optimiser step (a pair counts once)."""
    max_length: int = 64
    """Longest tokenized training example; longer ones are dropped (held-out ones are kept)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    seed: Seed = 0
    """Seed of the head's initialisation, the tiny model and the data order."""
    log_every: int = 50
    """Log the training loss every this many steps."""
    bf16: bool = False
    """bfloat16 mixed precision (a GPU that supports it); weights stay float32."""
    activation_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, more time (large models)."""


@dataclass
class RMRecipeConfig:
    """A reward-model training recipe."""

    description: str = ""
    """One line shown by `rlhf recipes`."""
    kind: str = "orm_pairs"
    """'orm_pairs' (Bradley–Terry), 'orm_labels' (binary cross-entropy) or 'prm' (step labels)."""
    model: RMModelConfig = field(default_factory=RMModelConfig)
    """The network to train."""
    data: RMDataConfig = field(default_factory=RMDataConfig)
    """Training and held-out data."""
    steps: StepFormatConfig = field(default_factory=StepFormatConfig)
    """Step format of a PRM (kind: prm only)."""
    train: RMTrainConfig = field(default_factory=RMTrainConfig)
    """Optimisation."""
    output_dir: str = "runs/rm"
    """Writes <output_dir>/model (the checkpoint) and <output_dir>/eval.json (held-out accuracy)."""


def load_rm_recipe(path: str | Path | None, overrides: Sequence[str] = ()) -> RMRecipeConfig:
    """Read and check a reward-model recipe (defaults, then the file, then ``overrides``)."""
    from rlhf.config.loader import load_config

    config = load_config(path, RMRecipeConfig, overrides)
    validate_rm(config)
    return config


def is_rm_recipe_file(path: str | Path) -> bool:
    """Whether the YAML file at ``path`` is a reward-model recipe (see :func:`is_rm_recipe_data`).
    An unreadable file is not (its loader reports why)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return is_rm_recipe_data(data)


def is_rm_recipe_data(data: object) -> bool:
    """Whether recipe data is a reward-model recipe: its top level names a `kind`, which RL
    recipes don't have."""
    return isinstance(data, dict) and "kind" in data


def rl_only_keys() -> set[str]:
    """Top-level sections of an RL recipe that a reward-model recipe does not have (`trainer`,
    `rollout`, `reward`, ...): a file naming one is an RL recipe."""
    return {f.name for f in fields(RecipeConfig)} - {f.name for f in fields(RMRecipeConfig)}


def validate_rm(config: RMRecipeConfig) -> None:
    """Value checks; each ConfigError names the key."""
    _one_of("kind", config.kind, KINDS)
    _one_of("model.source", config.model.source, ("tiny", "pretrained"))
    if config.model.source == "pretrained" and not config.model.path:
        raise ConfigError("model.path: required when model.source is 'pretrained'")
    data = config.data
    if data.source != SYNTHETIC and not data.source.endswith(".jsonl"):
        raise ConfigError(f"data.source: expected '{SYNTHETIC}' or a .jsonl path, got {data.source!r}")
    if data.eval_path and not data.eval_path.endswith(".jsonl"):
        raise ConfigError(f"data.eval_path: expected a .jsonl path, got {data.eval_path!r}")
    for key in ("eval_fraction", "test_fraction", "error_fraction"):
        if not 0.0 < getattr(data, key) < 1.0:
            raise ConfigError(f"data.{key}: must be between 0 and 1 (exclusive), got {getattr(data, key)}")
    for key in ("train_size", "eval_size"):
        if getattr(data, key) is not None and getattr(data, key) < 1:
            raise ConfigError(f"data.{key}: must be at least 1 or null, got {getattr(data, key)}")
    if data.digits < 1:
        raise ConfigError(f"data.digits: must be at least 1, got {data.digits}")
    if not config.steps.separator:
        raise ConfigError("steps.separator: must not be empty")
    if config.steps.step_split is not None:
        try:
            re.compile(config.steps.step_split)
        except re.error as error:
            raise ConfigError(f"steps.step_split: not a regular expression ({error})") from None
    _check_train(config.train)
    if not config.output_dir:
        raise ConfigError("output_dir: must not be empty")


def _check_train(train: RMTrainConfig) -> None:
    """Ranges of the optimisation keys."""
    for key in ("lr", "epochs"):
        if not getattr(train, key) > 0:
            raise ConfigError(f"train.{key}: must be positive, got {getattr(train, key)}")
    if not 0.0 <= train.warmup_ratio < 1.0:
        raise ConfigError(f"train.warmup_ratio: must be in [0, 1), got {train.warmup_ratio}")
    if train.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be non-negative, got {train.weight_decay}")
    for key in ("batch_size", "max_length", "log_every"):
        if getattr(train, key) < 1:
            raise ConfigError(f"train.{key}: must be at least 1, got {getattr(train, key)}")


def _one_of(key: str, value: str, valid: Sequence[str]) -> None:
    """A ConfigError naming ``key`` and the valid values unless ``value`` is one of them."""
    if value not in valid:
        raise ConfigError(f"{key}: unknown value {value!r}; valid: {', '.join(valid)}")
