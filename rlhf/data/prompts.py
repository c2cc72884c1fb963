"""Prompt datasets: load rows, drop over-long prompts, turn rows into token batches, iterate
in a seeded order.

Rows come from a hub dataset, a local file (:mod:`rlhf.data.files`: jsonl, json, csv, tsv,
parquet) or a builtin task; the field mapping of :mod:`rlhf.data.fields` gives each `prompt`,
`ground_truth`, `data_source` and keeps every other field for reward functions.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import ArithmeticTaskConfig, DataConfig, DatasetConfig
from rlhf.data.batch import Batch
from rlhf.data.fields import apply_template, map_rows
from rlhf.data.files import is_local_data_file, read_rows


def load_rows(dataset: DatasetConfig, arithmetic: ArithmeticTaskConfig, key: str, task_options: dict | None = None) -> list[dict]:
    """Rows of `dataset` mapped by :func:`rlhf.data.fields.map_rows` (prompt, ground_truth,
    data_source and every other field). `key` is the recipe key of the dataset (e.g.
    'data.train'), used in error messages; `task_options` (env.kwargs) shape the rows of a
    built-in environment's task (its range, its catalogue)."""
    if dataset.path.startswith("builtin:"):
        rows = _builtin_rows(dataset, arithmetic, key, task_options)
    elif is_local_data_file(dataset.path):
        rows = read_rows(Path(dataset.path), f"{key}.path")
    else:
        rows = _hf_rows(dataset, key)
    rows = rows[: dataset.size] if dataset.size is not None else rows
    if not rows:
        raise ConfigError(f"{key}.path: {dataset.path!r} has no rows")
    return map_rows(rows, dataset, key)


BUILTIN_DATASETS = ("arithmetic", "multiplication", "guess_number", "twenty_questions")
"""Datasets generated locally (`builtin:<name>`): the arithmetic quickstart task, multi-digit
multiplication (the calculator tool's task), and the episodes of two built-in environments."""


def _builtin_rows(dataset: DatasetConfig, arithmetic: ArithmeticTaskConfig, key: str, task_options: dict | None) -> list[dict]:
    name = dataset.path.removeprefix("builtin:")
    if name not in BUILTIN_DATASETS:
        raise ConfigError(f"{key}.path: unknown builtin dataset {name!r}; valid: {', '.join('builtin:' + n for n in BUILTIN_DATASETS)}")
    try:
        if name == "arithmetic":
            from rlhf.data.arithmetic import arithmetic_rows

            return arithmetic_rows(dataset.split, arithmetic.digits, arithmetic.test_fraction, arithmetic.seed)
        if name == "multiplication":
            from rlhf.data.multiplication import multiplication_rows

            default_size = 5000 if dataset.split == "train" else 500
            return multiplication_rows(dataset.split, dataset.size or default_size, arithmetic.seed)
        from rlhf.data.env_tasks import env_task_rows

        return env_task_rows(name, dataset.split, dataset.size, arithmetic.seed, options=task_options)
    except ValueError as error:
        raise ConfigError(f"{key}.split: {error}") from None


def _hf_rows(dataset: DatasetConfig, key: str) -> list[dict]:
    import datasets

    try:
        loaded = datasets.load_dataset(dataset.path, dataset.name, split=dataset.split)
    except Exception as error:  # datasets raises many types; the message is what matters
        # on one line: datasets' messages may span several
        raise ConfigError(f"{key}.path: could not load dataset {dataset.path!r}: {' '.join(str(error).split())}") from None
    return [dict(row) for row in loaded]


def drop_long_prompts(rows: list[dict], tokenizer, data: DataConfig, key: str) -> tuple[list[dict], int]:
    """(the rows whose prompt, as the model sees it, has at most `data.max_prompt_tokens`
    tokens; how many were dropped). All rows too long is a ConfigError naming `key`."""
    texts = [render_prompt(row, tokenizer, data.chat_template, data.system_prompt, data.prompt_template) for row in rows]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    kept = [row for row, length in zip(rows, lengths) if length <= data.max_prompt_tokens]
    if not kept:
        raise ConfigError(
            f"data.max_prompt_tokens: every prompt of {key} ({len(rows)} rows) is longer than {data.max_prompt_tokens} tokens "
            f"(the shortest has {min(lengths)}); raise data.max_prompt_tokens"
        )
    return kept, len(rows) - len(kept)


def render_prompt(row: dict, tokenizer, chat_template: bool, system_prompt: str | None, template: str | None = None) -> str:
    """The exact string the model sees: the row's prompt inside `template` (if any), then inside
    the chat template (if `chat_template`) after an optional system message."""
    text = apply_template(row, template)
    if not chat_template:
        return text
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def prompt_batch(
    rows: list[dict], tokenizer, *, chat_template: bool = False, system_prompt: str | None = None, template: str | None = None, max_prompt_tokens: int = 512
) -> Batch:
    """Left-padded `prompt_ids [B, P]`, `prompt_mask [B, P]` plus the rows' fields as non-tensors.

    Every field of any row becomes a non-tensor field (None for rows without it), so extra
    dataset fields reach reward functions; `prompt_text` is the prompt as the model sees it.
    """
    texts = [render_prompt(row, tokenizer, chat_template, system_prompt, template) for row in rows]
    encoded = tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False, padding_side="left")
    lengths = encoded["attention_mask"].sum(dim=-1)
    if int(lengths.max()) > max_prompt_tokens:
        worst = int(lengths.argmax())
        raise ConfigError(  # drop_long_prompts removes these from datasets; this guards other callers
            f"data.max_prompt_tokens: prompt {rows[worst]['prompt'][:60]!r} has {int(lengths[worst])} tokens, more than {max_prompt_tokens}"
        )
    non_tensors = {key: [row.get(key) for row in rows] for key in dict.fromkeys(k for row in rows for k in row)}
    non_tensors["prompt_text"] = texts
    tensors = {"prompt_ids": encoded["input_ids"], "prompt_mask": encoded["attention_mask"]}
    return Batch(tensors, non_tensors)


class PromptStream:
    """Endless batches of rows; each epoch is a fresh permutation drawn from `seed`."""

    def __init__(self, rows: list[dict], batch_size: int, seed: int):
        self.rows = rows
        self.batch_size = batch_size
        self.rng = random.Random(seed)
        self.order: list[int] = []

    def __iter__(self) -> Iterator[list[dict]]:
        return self

    def __next__(self) -> list[dict]:
        while len(self.order) < self.batch_size:
            epoch = list(range(len(self.rows)))
            self.rng.shuffle(epoch)
            self.order.extend(epoch)
        taken, self.order = self.order[: self.batch_size], self.order[self.batch_size :]
        return [self.rows[i] for i in taken]

    def state_dict(self) -> dict:
        """Where the stream stands: its generator and the rest of the current epoch's order."""
        return {"rng": self.rng.getstate(), "order": list(self.order)}

    def load_state_dict(self, state: dict) -> None:
        self.rng = random.Random()
        self.rng.setstate(state["rng"])
        self.order = list(state["order"])


def sequence_tensor(rows: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token-id lists to `[B, L]` (left or right); returns (ids, mask)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, span] = torch.tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask
