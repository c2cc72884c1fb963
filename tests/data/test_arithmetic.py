"""Synthetic addition task: split sizes, disjointness, determinism, formatting."""

import pytest

from rlhf.data.arithmetic import arithmetic_rows, format_sft_example

# First test prompts at the defaults (digits=2, test_fraction=0.1, seed=0).
PINNED_FIRST_TEST_PROMPTS = ["97+70=", "36+31=", "70+59="]


def _operands(prompt: str) -> tuple[str, str]:
    left, right = prompt.removesuffix("=").split("+")
    return left, right


def test_default_sizes_and_disjoint():
    train = arithmetic_rows("train")
    test = arithmetic_rows("test")
    assert (len(train), len(test)) == (9000, 1000)
    train_prompts = {row["prompt"] for row in train}
    test_prompts = {row["prompt"] for row in test}
    assert len(train_prompts) == 9000 and len(test_prompts) == 1000
    assert not train_prompts & test_prompts
    assert len(train_prompts | test_prompts) == 100 * 100


def test_deterministic_and_seed_dependent():
    assert arithmetic_rows("test") == arithmetic_rows("test", seed=0)
    assert arithmetic_rows("train", seed=3) == arithmetic_rows("train", seed=3)
    assert arithmetic_rows("test", seed=1) != arithmetic_rows("test", seed=0)


def test_fixed_first_rows_regression():
    # Pins the shuffle: a change here silently changes every benchmark's test set.
    first = [row["prompt"] for row in arithmetic_rows("test")[:3]]
    assert first == PINNED_FIRST_TEST_PROMPTS


def test_zero_padding_and_correct_answers():
    for row in arithmetic_rows("train")[:500] + arithmetic_rows("test"):
        left, right = _operands(row["prompt"])
        assert len(left) == len(right) == 2
        assert row["ground_truth"] == str(int(left) + int(right))
        assert row["data_source"] == "arithmetic"


def test_row_format_example():
    rows = arithmetic_rows("train") + arithmetic_rows("test")
    row = next(r for r in rows if r["prompt"] == "07+45=")
    assert row == {"prompt": "07+45=", "ground_truth": "52", "data_source": "arithmetic"}
    assert format_sft_example(row) == ("07+45=", "52")


@pytest.mark.parametrize("digits,total", [(1, 100), (3, 1_000_000)])
def test_other_digit_counts(digits, total):
    train = arithmetic_rows("train", digits=digits)
    test = arithmetic_rows("test", digits=digits)
    assert len(test) == round(0.1 * total)
    assert len(train) + len(test) == total
    for row in test[:200]:
        left, right = _operands(row["prompt"])
        assert len(left) == len(right) == digits
        assert row["ground_truth"] == str(int(left) + int(right))
    assert not {r["prompt"] for r in test} & {r["prompt"] for r in train[:5000]}


def test_unpadded_answer():
    rows = arithmetic_rows("train", digits=1) + arithmetic_rows("test", digits=1)
    row = next(r for r in rows if r["prompt"] == "0+0=")
    assert row["ground_truth"] == "0"


def test_unknown_split_names_valid_ones():
    with pytest.raises(ValueError, match=r"'validation'.*train, test"):
        arithmetic_rows("validation")
