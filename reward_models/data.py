"""Reward-model training data: the examples of a recipe, and how each becomes token ids.

Example formats (one JSON object per line in a `.jsonl` file, one shape per `kind`):

    kind         fields                                          example
    orm_pairs    prompt, chosen, rejected (strings)              {"prompt": "07+45=", "chosen": "52", "rejected": "42"}
    orm_labels   prompt, response (strings), label (0 or 1)      {"prompt": "07+45=", "response": "52", "label": 1}
    prm          prompt (string), steps (strings),               {"prompt": "07+45=", "steps": ["7+5=12", "0+4+1=5",
                 labels (0/1 per step, 1 = good step)             "answer 52"], "labels": [1, 1, 1]}

Model inputs (one convention for training, evaluation and the RL loop's scorers):

* ORM: the text ``prompt + response`` tokenized with the tokenizer's default special tokens
  (no EOS appended); the score is the head's output at the last token. This is what the RL
  loop's ``type: orm`` source feeds a ``classifier`` by default (template
  "{prompt}{response}"). TRL's ``RewardTrainer`` would append EOS to plain-text pairs, so we
  hand it token ids instead.
* PRM: ``prompt + step_1 + sep + step_2 + sep + ... + step_n + sep`` (sep = the separator,
  one token), tokenized the same way; the label of step i sits at the i-th separator token
  and every other position is -100 (ignored by the loss). This is the layout of
  Qwen2.5-Math-PRM ("<extra_0>" after each step; Zhang et al. 2025, "The Lessons of
  Developing Process Reward Models in Mathematical Reasoning") and what the ``type: prm``
  source feeds a ``two_class`` model by default (no template, empty joiner).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from reward_models import synthetic
from reward_models.config import SYNTHETIC, RMDataConfig
from rlhf.config.errors import ConfigError

FIELDS = {
    "orm_pairs": {"prompt": str, "chosen": str, "rejected": str},
    "orm_labels": {"prompt": str, "response": str, "label": int},
    "prm": {"prompt": str, "steps": list, "labels": list},
}
"""kind -> required field -> type, of one example."""
IGNORE_INDEX = -100
"""Label of positions the loss skips (the Hugging Face convention)."""


def load_examples(kind: str, data: RMDataConfig) -> tuple[list[dict], list[dict]]:
    """(training examples, held-out examples) of a recipe's `data` section for `kind`."""
    if data.source == SYNTHETIC:
        train, held_out = (_synthetic(kind, split, data) for split in ("train", "test"))
    else:
        train = read_jsonl(data.source, kind, "data.source")
        if data.eval_path:
            held_out = read_jsonl(data.eval_path, kind, "data.eval_path")
        else:
            train, held_out = _hold_out(train, data.eval_fraction, data.seed)
    train = train[: data.train_size] if data.train_size else train
    held_out = held_out[: data.eval_size] if data.eval_size else held_out
    if not train or not held_out:
        raise ConfigError(f"data: {len(train)} training and {len(held_out)} held-out examples; "
                          "both must be non-empty")
    return train, held_out


def _synthetic(kind: str, split: str, data: RMDataConfig) -> list[dict]:
    """The synthetic arithmetic examples of `kind` for one split."""
    common = {"digits": data.digits, "test_fraction": data.test_fraction, "seed": data.seed}
    if kind == "orm_pairs":
        return synthetic.preference_pairs(split, **common)
    if kind == "orm_labels":
        return synthetic.labelled_responses(split, error_fraction=data.error_fraction, **common)
    return synthetic.step_labelled_solutions(split, error_fraction=data.error_fraction, **common)


def _hold_out(examples: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """A seeded random split of ``examples`` into (train, held-out ``fraction``)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    count = max(1, round(fraction * len(examples)))
    return [examples[i] for i in order[count:]], [examples[i] for i in order[:count]]


def read_jsonl(path: str, kind: str, key: str) -> list[dict]:
    """The examples of a jsonl file in the format of `kind`; a bad line is a ConfigError naming
    recipe `key`, the file and the line."""
    try:
        lines = Path(path).expanduser().read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path!r}: {error.strerror or error}") from None
    examples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{key}: {path} line {number}"
        try:
            example = json.loads(line)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: invalid JSON ({error.msg})") from None
        examples.append(check_example(example, kind, where))
    return examples


def check_example(example: object, kind: str, where: str) -> dict:
    """``example`` if it has the fields of `kind` with the right types, else a ConfigError."""
    if not isinstance(example, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(example).__name__}")
    for name, field_type in FIELDS[kind].items():
        if name not in example:
            raise ConfigError(f"{where}: missing field {name!r} (a {kind} example has "
                              f"{', '.join(FIELDS[kind])})")
        if not isinstance(example[name], field_type) or isinstance(example[name], bool):
            raise ConfigError(f"{where}: field {name!r} must be a {field_type.__name__}")
    if kind == "orm_labels" and example["label"] not in (0, 1):
        raise ConfigError(f"{where}: label must be 0 or 1, got {example['label']!r}")
    if kind == "prm":
        steps, labels = example["steps"], example["labels"]
        if not steps or len(steps) != len(labels):
            raise ConfigError(f"{where}: steps and labels must be non-empty lists of equal length")
        if not all(isinstance(s, str) for s in steps) or any(label not in (0, 1) for label in labels):
            raise ConfigError(f"{where}: steps must be strings and labels 0 or 1")
    return example


def encode_orm(tokenizer, prompt: str, response: str) -> list[int]:
    """Token ids an ORM scores: ``prompt + response`` (score at the last token)."""
    return tokenizer(prompt + response)["input_ids"]


def separator_id(tokenizer, separator: str) -> int:
    """The id of the PRM step separator, which must be exactly one token."""
    ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ConfigError(f"steps.separator: {separator!r} is {len(ids)} tokens for this tokenizer; "
                          "it must be exactly one")
    return ids[0]


def encode_prm(tokenizer, prompt: str, steps: list[str], separator: str,
               labels: list[int] | None = None) -> tuple[list[int], list[int]]:
    """(input ids, token labels) of a step-separated solution: the label of step i at the
    i-th separator, ``IGNORE_INDEX`` elsewhere (all ``IGNORE_INDEX`` when ``labels`` is None,
    for scoring). The separator must occur nowhere but after the steps."""
    sep_id = separator_id(tokenizer, separator)
    input_ids = tokenizer(prompt + "".join(step + separator for step in steps))["input_ids"]
    positions = [i for i, token in enumerate(input_ids) if token == sep_id]
    if len(positions) != len(steps):
        raise ValueError(f"expected {len(steps)} separator tokens {separator!r} (one per step), found "
                         f"{len(positions)}: the separator must not occur in the prompt or the steps")
    token_labels = [IGNORE_INDEX] * len(input_ids)
    for position, label in zip(positions, labels or ()):
        token_labels[position] = int(label)
    return input_ids, token_labels
