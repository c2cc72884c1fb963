"""Synthetic multiplication task: "123*4567=" -> "561741", which needs a tool.

A 0.3M-parameter character-level model cannot multiply 3-4 digit numbers in its head, but it
can learn to call the calculator (`<calc>123*4567</calc>`) and copy the result: this is the
task of the `tool` environment's tiny recipe.

Each operand has between `digits[0]` and `digits[1]` digits (inclusive; no leading zeros).
There are far too many pairs to enumerate, so each *unordered* pair {a, b} is assigned to a
split by a keyed hash (sha256 of seed and pair, never Python's `hash`): the splits are disjoint
(neither "123*4567" nor "4567*123" of a test pair is ever in train), the same on every run and
machine, and `TEST_SHARE` of the pairs belong to test. Rows are drawn from the split's pairs by
`random.Random` seeded with (seed, split), without repeats.
"""

from __future__ import annotations

import hashlib
import random

DATA_SOURCE = "multiplication"
SPLITS = ("train", "test")
TEST_SHARE = 0.2
"""Share of all operand pairs that belong to the test split."""


def _split_of(a: int, b: int, seed: int) -> str:
    """The split unordered pair {a, b} belongs to."""
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"{seed}:{low}*{high}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < TEST_SHARE * 2**64 else "train"


def _operand(rng: random.Random, digits: tuple[int, int]) -> int:
    """An operand with a uniformly drawn number of digits in [digits[0], digits[1]]."""
    count = rng.randint(digits[0], digits[1])
    return rng.randint(10 ** (count - 1), 10**count - 1)


def _check(split: str, size: int, digits: tuple[int, int]) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    if size < 0:
        raise ValueError(f"size must be at least 0, got {size}")
    if len(digits) != 2 or not 1 <= digits[0] <= digits[1]:
        raise ValueError(f"digits must be (fewest, most) with 1 <= fewest <= most, got {digits}")
    operands = 10 ** digits[1] - 10 ** (digits[0] - 1)
    share = TEST_SHARE if split == "test" else 1 - TEST_SHARE
    if size > 0.5 * share * operands**2:
        # Few digits leave few distinct pairs; refuse rather than draw (nearly) forever.
        raise ValueError(
            f"{size} {split} rows is too many for operands of {digits[0]}-{digits[1]} digits"
        )


def multiplication_rows(
    split: str, size: int, seed: int = 0, digits: tuple[int, int] = (3, 4)
) -> list[dict]:
    """`size` distinct rows of the multiplication task for one split.

    Args:
        split: "train" or "test".
        size: number of rows.
        seed: seed of the split assignment and of the draw.
        digits: (fewest, most) digits of each operand.

    Returns:
        Dicts with "prompt" (e.g. "123*4567="), "ground_truth" (the product as a string, e.g.
        "561741") and "data_source" ("multiplication"). The `arithmetic` reward source scores a
        final answer against ground_truth by exact match.
    """
    _check(split, size, tuple(digits))
    rng = random.Random(f"{seed}:{split}")
    seen: set[tuple[int, int]] = set()
    rows = []
    while len(rows) < size:
        a, b = _operand(rng, digits), _operand(rng, digits)
        if (a, b) in seen or _split_of(a, b, seed) != split:
            continue
        seen.add((a, b))
        rows.append({"prompt": f"{a}*{b}=", "ground_truth": str(a * b), "data_source": DATA_SOURCE})
    return rows
