"""Dispatch of Batches over data-parallel ranks: shards, padding, gathering, metrics."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rlhf.data.batch import Batch
from rlhf.distributed.dispatch import WEIGHT_KEY, gather_engines, gather_shards, mean_metrics, shard_batch, shard_for_engines, shard_weight


def numbered_batch(rows: int) -> Batch:
    return Batch({"prompt_ids": torch.arange(rows * 3).view(rows, 3), "response_mask": torch.ones(rows, 2, dtype=torch.long)}, {"prompt": [f"p{i}" for i in range(rows)]})


def test_shards_are_contiguous_and_equal_in_size():
    shards, padding = shard_batch(numbered_batch(6), 3)
    assert padding == 0
    assert [shard["prompt"] for shard in shards] == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"]]


def test_an_indivisible_batch_is_padded_with_the_last_row_and_gathered_without_it():
    shards, padding = shard_batch(numbered_batch(5), 2)
    assert padding == 1
    assert [len(shard) for shard in shards] == [3, 3]
    assert shards[1]["prompt"] == ["p3", "p4", "p4"]
    gathered = gather_shards(shards, padding)
    assert gathered["prompt"] == [f"p{i}" for i in range(5)]
    assert torch.equal(gathered["prompt_ids"], numbered_batch(5)["prompt_ids"])


def test_training_batches_refuse_padding():
    with pytest.raises(ValueError, match="5 rows does not split evenly over 2"):
        shard_batch(numbered_batch(5), 2, allow_padding=False)


def test_tensor_results_of_different_widths_are_right_padded_then_trimmed():
    parts = [torch.ones(2, 3), torch.full((2, 1), 2.0)]
    gathered = gather_shards(parts, padding=1)
    assert gathered.shape == (3, 3)
    assert gathered[2].tolist() == [2.0, 0.0, 0.0]


@given(rows=st.integers(1, 40), world=st.integers(1, 8))
def test_shard_then_gather_is_the_identity(rows, world):
    batch = numbered_batch(rows)
    shards, padding = shard_batch(batch, world)
    assert len(shards) == world and len({len(shard) for shard in shards}) == 1
    assert gather_shards(shards, padding)["prompt"] == batch["prompt"]


def test_metrics_are_weighted_by_what_each_rank_averaged_over():
    # rank 0 averaged a loss of 1.0 over 3 tokens, rank 1 a loss of 3.0 over 1 token:
    # the whole batch's token-mean is (3 * 1 + 1 * 3) / 4 = 1.5
    per_rank = [{"loss": 1.0, "lr": 0.1, WEIGHT_KEY: 3.0}, {"loss": 3.0, "lr": 0.1, WEIGHT_KEY: 1.0}]
    assert mean_metrics(per_rank) == pytest.approx({"loss": 1.5, "lr": 0.1})
    assert mean_metrics([{"x": 1.0}, {"x": 2.0}]) == {"x": 1.5}


def test_shard_weight_counts_tokens_for_token_mean_and_rows_otherwise():
    shard = Batch({"response_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])})
    assert shard_weight(shard, "token-mean") == 3.0
    assert shard_weight(shard, "seq-mean-token-mean") == 2.0


def test_tensor_parallel_engines_get_one_shard_on_each_of_their_ranks():
    per_rank, padding = shard_for_engines(numbered_batch(5), world_size=4, tensor_parallel_size=2)
    assert padding == 1
    assert [batch["prompt"] for batch in per_rank] == [["p0", "p1", "p2"]] * 2 + [["p3", "p4", "p4"]] * 2
    assert gather_engines(per_rank, 2, padding)["prompt"] == [f"p{i}" for i in range(5)]
