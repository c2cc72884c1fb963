"""Length-sorted, trimmed micro-batches (`rlhf.data.padding`): fewer padding tokens, the same results."""

import torch

from rlhf.data.batch import Batch
from rlhf.data.padding import length_order, map_micro_batches, pad_columns, trimmed


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
