"""Length-sorted, trimmed micro-batches (`rlhf.data.padding`): fewer padding tokens, the same results."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.data.batch import Batch
from rlhf.data.padding import length_order, map_micro_batches, micro_batch_rows, pad_columns, split_to_count, trimmed


def ragged_batch() -> Batch:
    """Three rows: prompts of 1, 3, 2 tokens (left-padded to 4), responses of 2, 1, 3 (right-padded to 5)."""
    prompt_mask = torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]])
    response_mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    return Batch(
        {"prompt_ids": prompt_mask * 7, "prompt_mask": prompt_mask, "response_ids": response_mask * 9, "response_mask": response_mask,
         "advantages": response_mask.float() * 2, "values": torch.zeros(3, 5, 4), "scores": torch.tensor([1.0, 2.0, 3.0])},
        {"text": ["a", "b", "c"]},
    )


def test_trimmed_drops_columns_that_are_padding_in_every_row():
    batch = ragged_batch()
    trim = trimmed(batch)
    assert trim["prompt_mask"].tolist() == [[0, 0, 1], [1, 1, 1], [0, 1, 1]]
    assert trim["response_mask"].shape == (3, 3) and trim["advantages"].shape == (3, 3) and trim["values"].shape == (3, 3, 4)
    assert torch.equal(trim["scores"], batch["scores"]) and trim["text"] == ["a", "b", "c"]
    assert trim.meta["response_width"] == 5  # the divisor of seq-mean-token-sum-norm stays the batch's width
    single = trimmed(batch.select([1]))
    assert single["prompt_mask"].tolist() == [[1, 1, 1]] and single["response_mask"].tolist() == [[1]]


def test_length_order_is_shortest_first_and_stable():
    batch = ragged_batch()  # lengths 3, 4, 5
    assert length_order(batch).tolist() == [0, 1, 2]
    assert length_order(batch.select([2, 0, 1])).tolist() == [1, 2, 0]


def test_map_micro_batches_returns_outputs_in_the_batch_order_and_width():
    batch = ragged_batch().select([2, 0, 1])
    widths = []

    def per_token(micro: Batch) -> torch.Tensor:  # each response token's row total, as a model output would
        widths.append(micro["response_mask"].shape[1])
        return micro["response_mask"].float() * (micro["prompt_mask"].sum(-1, keepdim=True) + micro["response_mask"].sum(-1, keepdim=True))

    out = map_micro_batches(batch, 1, per_token)
    expected = batch["response_mask"].float() * (batch["prompt_mask"].sum(-1, keepdim=True) + batch["response_mask"].sum(-1, keepdim=True))
    assert torch.equal(out, expected)
    assert widths == [2, 1, 3]  # shortest row first, each micro-batch as wide as its own response
    assert torch.equal(map_micro_batches(batch, 2, per_token), expected)


def test_pad_columns():
    assert pad_columns(torch.ones(2, 1, 3), 4).shape == (2, 4, 3) and pad_columns(torch.ones(2, 4), 4).shape == (2, 4)
    assert pad_columns(torch.ones(1, 2), 3).tolist() == [[1.0, 1.0, 0.0]]


def padded_tokens(batch: Batch) -> int:
    """Tokens a forward over the trimmed batch processes: rows × (prompt + response) width."""
    trim = trimmed(batch)
    return len(batch) * (trim["prompt_mask"].shape[1] + trim["response_mask"].shape[1])


def test_a_token_budget_bounds_every_micro_batch_and_keeps_every_row_once():
    batch = ragged_batch()  # sequence lengths 3, 4, 5
    runs = micro_batch_rows(batch, size=64, max_tokens=10)
    assert sorted(torch.cat(runs).tolist()) == [0, 1, 2]
    # rows 0 and 1: 2 rows × (longest prompt 3 + longest response 2) = 10 tokens; adding row 2
    # would make 3 × (3 + 3) = 18
    assert [r.tolist() for r in runs] == [[0, 1], [2]]
    assert all(padded_tokens(batch.select(r)) <= 10 for r in runs)
    # the row cap still applies under a budget; a row over the budget gets its own micro-batch
    assert [r.tolist() for r in micro_batch_rows(batch, size=1, max_tokens=100)] == [[0], [1], [2]]
    assert [r.tolist() for r in micro_batch_rows(batch, size=64, max_tokens=2)] == [[0], [1], [2]]
    # no budget: runs of `size` rows in length order
    assert [r.tolist() for r in micro_batch_rows(batch, size=2)] == [[0, 1], [2]]


def test_ranks_agree_on_the_micro_batch_count_by_splitting_their_widest():
    batch = ragged_batch()
    # one micro-batch of all three rows fits the budget; another rank needs three
    runs = micro_batch_rows(batch, size=64, max_tokens=100, agree=lambda count: max(count, 3))
    assert [r.tolist() for r in runs] == [[0], [1], [2]]
    assert [r.tolist() for r in split_to_count([torch.tensor([4, 5, 6, 7]), torch.tensor([8])], 3)] == [[4, 5], [6, 7], [8]]
    with pytest.raises(ValueError, match="cannot make 3 micro-batches from 2 rows"):
        split_to_count([torch.tensor([1]), torch.tensor([2])], 3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(0, 7)), min_size=1, max_size=12), st.integers(1, 5), st.integers(0, 40))
def test_budgeted_micro_batches_partition_the_rows_within_the_budget(lengths, size, max_tokens):
    prompt_width, response_width = 6, 7
    prompt_mask = torch.tensor([[0] * (prompt_width - p) + [1] * p for p, _ in lengths])
    response_mask = torch.tensor([[1] * r + [0] * (response_width - r) for _, r in lengths])
    batch = Batch({"prompt_mask": prompt_mask, "response_mask": response_mask, "prompt_ids": prompt_mask, "response_ids": response_mask})
    runs = micro_batch_rows(batch, size, max_tokens)
    assert sorted(torch.cat(runs).tolist()) == list(range(len(lengths)))
    for rows in runs:
        assert 1 <= len(rows) <= size
        assert len(rows) == 1 or max_tokens == 0 or padded_tokens(batch.select(rows)) <= max_tokens
    out = map_micro_batches(batch, size, lambda micro: micro["response_mask"].float() * micro["prompt_mask"].sum(-1, keepdim=True), max_tokens)
    assert torch.equal(out, response_mask.float() * prompt_mask.sum(-1, keepdim=True))
