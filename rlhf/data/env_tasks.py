"""Task rows of the built-in environments: `data.train: {path: "builtin:guess_number"}`.

Each row is one episode's start: `prompt` (short, so that the tiny character-level model's
context holds a whole episode), `ground_truth` (the hidden number or object, as a string) and
`data_source` (the environment's name); guess_number rows also carry `n`, the size of the range.

Both tasks have few distinct episodes (n hidden numbers, one per catalogue object), so the
splits share them; what differs is the order. Each split cycles through every hidden value in a
fresh order fixed by `random.Random` seeded with (task, split, seed): every value appears
equally often (±1), the rows are the same on every run and machine, and the held-out
evaluation is balanced and reproducible. What a policy must generalise over is the
interaction (the answers it gets), not the hidden values.

This module reads the twenty_questions catalogue file itself and imports nothing of
:mod:`rlhf.envs` (which sits above data).
"""

from __future__ import annotations

import json
import random
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

TASKS = ("guess_number", "twenty_questions")
SPLITS = ("train", "test")
DEFAULT_SIZES = {"train": 1024, "test": 64}
"""Rows per split when `size` is None."""
DEFAULT_N = 16
"""guess_number's range [0, n) when the options do not give `n`."""


def env_task_rows(name: str, split: str, size: int | None, seed: int, options: Mapping[str, Any] | None = None,
                  long_prompt: bool = False) -> list[dict]:
    """Rows of built-in task `name` for one split.

    Args:
        name: "guess_number" or "twenty_questions".
        split: "train" or "test".
        size: number of rows; None: 1024 for train, 64 for test.
        seed: seed of the order of the hidden values.
        options: the environment's constructor kwargs (env.kwargs), of which the rows follow
            guess_number's `n` (default 16) and twenty_questions' `catalogue` (a JSON path);
            other keys are ignored here.
        long_prompt: prompts that state the rules in full, for pretrained instruction models
            (the default short ones, "guess 0-15" and "find the object", suit tiny models
            trained from scratch).

    Returns:
        guess_number: {"prompt": "guess 0-15", "ground_truth": "11", "n": 16, "data_source": "guess_number"};
        twenty_questions: {"prompt": "find the object", "ground_truth": "cat", "data_source": "twenty_questions"}.
    """
    if name not in TASKS:
        raise ValueError(f"unknown built-in environment task {name!r}; valid ones: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of builtin:{name}; valid splits: {', '.join(SPLITS)}")
    size = DEFAULT_SIZES[split] if size is None else size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size of builtin:{name} must be a whole number >= 1, got {size!r}")
    options = dict(options or {})
    rng = random.Random(f"{name}/{split}/{seed}")
    if name == "guess_number":
        n = options.get("n", DEFAULT_N)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"guess_number's n must be an integer >= 1, got {n!r}")
        prompt = guess_number_prompt(n, long_prompt)
        return [{"prompt": prompt, "ground_truth": str(target), "n": n, "data_source": name}
                for target in _balanced(list(range(n)), size, rng)]
    attributes, objects = read_catalogue(options.get("catalogue"))
    prompt = twenty_questions_prompt(attributes, objects, long_prompt)
    return [{"prompt": prompt, "ground_truth": target, "data_source": name} for target in _balanced(objects, size, rng)]


def guess_number_prompt(n: int, long_prompt: bool = False) -> str:
    """'guess 0-15', or the rules in full."""
    if not long_prompt:
        return f"guess 0-{n - 1}"
    return (f"I am thinking of a whole number from 0 to {n - 1}. Guess it: answer with one number per turn, "
            "and I will say higher, lower or correct.")


def twenty_questions_prompt(attributes: list[str], objects: list[str], long_prompt: bool = False) -> str:
    """'find the object', or the rules with the catalogue's attributes and objects."""
    if not long_prompt:
        return "find the object"
    return (f"I am thinking of one of these objects: {', '.join(objects)}. Find it by asking yes/no questions "
            f"of the form 'is it <attribute>?' (attributes: {', '.join(attributes)}), one per turn, and guess "
            "with 'it is <object>'.")


def read_catalogue(path: str | None = None) -> tuple[list[str], list[str]]:
    """(attribute names, object names) of the twenty_questions catalogue at `path` (None: the
    built-in one, rlhf/envs/data/twenty_questions.json)."""
    if path is None:
        text = resources.files("rlhf").joinpath("envs", "data", "twenty_questions.json").read_text()
    else:
        text = Path(path).expanduser().read_text()
    data = json.loads(text)
    return list(data["attributes"]), list(data["objects"])


def _balanced(values: list, size: int, rng: random.Random) -> list:
    """`size` values: passes over all of `values`, each pass in a fresh random order."""
    chosen: list = []
    while len(chosen) < size:
        cycle = list(values)
        rng.shuffle(cycle)
        chosen.extend(cycle)
    return chosen[:size]
