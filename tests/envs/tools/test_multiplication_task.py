"""The multiplication task: correct products, operand sizes, disjoint and deterministic splits,
prompts within the character tokenizer, answers the arithmetic reward scores."""

from __future__ import annotations

import pytest

from rlhf.data.multiplication import multiplication_rows
from rlhf.models.tokenizer import CHARACTERS
from rlhf.rewards.arithmetic import arithmetic_score


def _pair(row: dict) -> frozenset[int]:
    left, right = row["prompt"].removesuffix("=").split("*")
    return frozenset((int(left), int(right)))


def test_rows_are_correct_and_in_range():
    rows = multiplication_rows("train", 300, seed=1)
    assert len(rows) == 300 and len({row["prompt"] for row in rows}) == 300
    for row in rows:
        left, right = row["prompt"].removesuffix("=").split("*")
        assert 3 <= len(left) <= 4 and 3 <= len(right) <= 4 and not left.startswith("0")
        assert row["ground_truth"] == str(int(left) * int(right))
        assert set(row["prompt"]) <= set(CHARACTERS)
        assert arithmetic_score(row["ground_truth"], row["ground_truth"]) == 1.0
        assert arithmetic_score(str(int(row["ground_truth"]) + 1), row["ground_truth"]) == 0.0


def test_splits_are_disjoint_as_unordered_pairs_and_deterministic():
    train = multiplication_rows("train", 3000)
    test = multiplication_rows("test", 1000)
    assert not {_pair(row) for row in train} & {_pair(row) for row in test}
    assert multiplication_rows("test", 1000) == test
    assert multiplication_rows("test", 50, seed=1) != test[:50]
    assert multiplication_rows("test", 50) == test[:50]  # a smaller draw is a prefix


def test_small_operands_and_bad_arguments():
    rows = multiplication_rows("train", 20, digits=(1, 2))
    assert all(len(part) <= 2 for row in rows for part in row["prompt"][:-1].split("*"))
    with pytest.raises(ValueError, match="split"):
        multiplication_rows("valid", 1)
    with pytest.raises(ValueError, match="digits"):
        multiplication_rows("train", 1, digits=(4, 3))
    with pytest.raises(ValueError, match="too many"):
        multiplication_rows("test", 100, digits=(1, 1))
