"""Dispatch of Batches and row lists over data-parallel ranks: shards, padding, gathering,
metrics, and the declarations role methods carry."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rlhf.data.batch import Batch
from rlhf.dispatch import ALL, SPLIT, SPLIT_EXACT, Dispatch, dispatch, dispatch_table, gather_engines, gather_shards, mean_metrics, reduce_all, shard_for_engines, shard_rows


def numbered_batch(rows: int) -> Batch:
    return Batch({"prompt_ids": torch.arange(rows * 3).view(rows, 3), "response_mask": torch.ones(rows, 2, dtype=torch.long)}, {"prompt": [f"p{i}" for i in range(rows)]})


def test_shards_are_contiguous_and_equal_in_size():
    shards, padding = shard_rows(numbered_batch(6), 3)
    assert padding == 0
    assert [shard["prompt"] for shard in shards] == [["p0", "p1"], ["p2", "p3"], ["p4", "p5"]]


def test_an_indivisible_batch_is_padded_with_the_last_row_and_gathered_without_it():
    shards, padding = shard_rows(numbered_batch(5), 2)
    assert padding == 1
    assert [len(shard) for shard in shards] == [3, 3]
    assert shards[1]["prompt"] == ["p3", "p4", "p4"]
    gathered = gather_shards(shards, padding)
    assert gathered["prompt"] == [f"p{i}" for i in range(5)]
    assert torch.equal(gathered["prompt_ids"], numbered_batch(5)["prompt_ids"])


def test_training_batches_refuse_padding():
    with pytest.raises(ValueError, match="5 rows does not split evenly over 2"):
        shard_rows(numbered_batch(5), 2, allow_padding=False)


def test_tensor_results_of_different_widths_are_right_padded_then_trimmed():
    parts = [torch.ones(2, 3), torch.full((2, 1), 2.0)]
    gathered = gather_shards(parts, padding=1)
    assert gathered.shape == (3, 3)
    assert gathered[2].tolist() == [2.0, 0.0, 0.0]


@given(rows=st.integers(1, 40), world=st.integers(1, 8))
def test_shard_then_gather_is_the_identity(rows, world):
    batch = numbered_batch(rows)
    shards, padding = shard_rows(batch, world)
    assert len(shards) == world and len({len(shard) for shard in shards}) == 1
    assert gather_shards(shards, padding)["prompt"] == batch["prompt"]


def test_metrics_are_weighted_by_what_each_rank_averaged_over():
    # rank 0 averaged a loss of 1.0 over 3 tokens, rank 1 a loss of 3.0 over 1 token:
    # the whole batch's token-mean is (3 * 1 + 1 * 3) / 4 = 1.5
    per_rank = [{"loss": 1.0, "lr": 0.1}, {"loss": 3.0, "lr": 0.1}]
    assert mean_metrics(per_rank, [3.0, 1.0]) == pytest.approx({"loss": 1.5, "lr": 0.1})
    assert mean_metrics([{"x": 1.0}, {"x": 2.0}]) == {"x": 1.5}
    assert mean_metrics([{"x": 1.0}, {"x": 2.0}], [0.0, 0.0]) == {"x": 1.5}


def test_lists_of_rows_shard_and_gather_like_batches():
    shards, padding = shard_rows([[1], [2, 2], [3]], 2)
    assert shards == [[[1], [2, 2]], [[3], [3]]] and padding == 1
    assert gather_shards([[0.5, 0.25], [0.125, 0.125]], padding) == [0.5, 0.25, 0.125]


def test_all_calls_answer_with_rank_zero_or_the_sum():
    assert reduce_all([3, 4], "first") == 3
    assert reduce_all([3, 4], "sum") == 7


class Role:
    @dispatch(SPLIT)
    def forward(self, batch):
        return batch

    @dispatch(SPLIT_EXACT, weight="share")
    def train(self, batch):
        return {}

    @dispatch(ALL, reduce="sum")
    def sync(self):
        return 1

    def share(self, batch):
        return 1.0

    def helper(self):
        """Not a role method: no dispatch."""


def test_declarations_are_read_from_the_class_and_change_nothing_in_process():
    table = dispatch_table(Role)
    assert table == {"forward": Dispatch(SPLIT), "train": Dispatch(SPLIT_EXACT, weight="share"), "sync": Dispatch(ALL, reduce="sum")}
    assert Role().forward([1]) == [1] and Role().sync() == 1


@pytest.mark.parametrize("spec", [dict(mode="scatter"), dict(mode=SPLIT_EXACT), dict(mode=SPLIT, weight="share"), dict(mode=ALL, reduce="max")])
def test_a_malformed_declaration_is_refused(spec):
    with pytest.raises(ValueError):
        dispatch(**spec)


def test_tensor_parallel_engines_get_one_shard_on_each_of_their_ranks():
    per_rank, padding = shard_for_engines(numbered_batch(5), world_size=4, ranks_per_engine=2)
    assert padding == 1
    assert [batch["prompt"] for batch in per_rank] == [["p0", "p1", "p2"]] * 2 + [["p3", "p4", "p4"]] * 2
    assert gather_engines(per_rank, 2, padding)["prompt"] == [f"p{i}" for i in range(5)]
