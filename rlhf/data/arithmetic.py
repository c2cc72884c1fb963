"""Synthetic addition task: "07+45=" -> "52", small enough for a tiny model to learn on CPU.

Every ordered operand pair (a, b) with ``0 <= a, b < 10**digits`` appears exactly once, in
either the train or the test split. The pairs are shuffled by ``random.Random(seed)`` (never the
global RNG, never ``hash``), so the splits are the same on every run and machine, and disjoint.
Operands are zero-padded to ``digits`` so every prompt of a task has the same length; the answer
is not padded.
"""

from __future__ import annotations

import random

DATA_SOURCE = "arithmetic"
SPLITS = ("train", "test")


def _shuffled_pairs(digits: int, seed: int) -> list[tuple[int, int]]:
    """All ordered operand pairs, in an order fixed by ``seed``."""
    limit = 10**digits
    pairs = [(a, b) for a in range(limit) for b in range(limit)]
    random.Random(seed).shuffle(pairs)
    return pairs


def _make_row(a: int, b: int, digits: int) -> dict:
    """One example: zero-padded prompt, unpadded sum as the ground truth."""
    return {
        "prompt": f"{a:0{digits}d}+{b:0{digits}d}=",
        "ground_truth": str(a + b),
        "data_source": DATA_SOURCE,
    }


def arithmetic_rows(
    split: str, digits: int = 2, test_fraction: float = 0.1, seed: int = 0
) -> list[dict]:
    """Rows of the addition task for one split.

    Args:
        split: "train" or "test".
        digits: digits per operand; there are ``10**(2*digits)`` pairs in all.
        test_fraction: share of the pairs held out for "test" (rounded to a whole count).
        seed: seed of the shuffle that assigns pairs to splits.

    Returns:
        Dicts with "prompt" (e.g. "07+45="), "ground_truth" (e.g. "52") and
        "data_source" ("arithmetic"). At the defaults: 9000 train rows, 1000 test rows.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be in [0, 1], got {test_fraction}")
    pairs = _shuffled_pairs(digits, seed)
    num_test = round(test_fraction * len(pairs))
    chosen = pairs[:num_test] if split == "test" else pairs[num_test:]
    return [_make_row(a, b, digits) for a, b in chosen]


def format_sft_example(row: dict) -> tuple[str, str]:
    """(prompt, response) text for supervised fine-tuning, e.g. ("07+45=", "52").

    No EOS is appended: the SFT trainer adds the tokenizer's EOS token itself.
    """
    return row["prompt"], row["ground_truth"]
