"""`Batch`: selection, splitting, repetition, concatenation and the batch-size checks."""

import pytest
import torch

from rlhf.data.batch import Batch


def make_batch(size: int = 4, width: int = 3) -> Batch:
    """Row i of every field carries the number i, so reordering is easy to check."""
    rows = torch.arange(size)
    return Batch(
        tensors={
            "response_ids": rows[:, None] * 10 + torch.arange(width),
            "scores": rows.float(),
        },
        non_tensors={"ground_truth": [f"gt{i}" for i in range(size)]},
        meta={"step": 7},
    )


def test_len_getitem_contains_keys():
    batch = make_batch()
    assert len(batch) == 4
    assert batch["ground_truth"] == ["gt0", "gt1", "gt2", "gt3"]
    assert torch.equal(batch["scores"], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert "scores" in batch and "ground_truth" in batch and "missing" not in batch
    assert batch.keys() == ["response_ids", "scores", "ground_truth"]
    with pytest.raises(KeyError, match="missing"):
        batch["missing"]


def test_empty_batch_has_length_zero():
    assert len(Batch()) == 0
    assert len(Batch(non_tensors={"x": ["a", "b"]})) == 2


def test_mismatched_sizes_raise():
    with pytest.raises(ValueError, match="disagree"):
        Batch(tensors={"a": torch.zeros(3), "b": torch.zeros(2, 5)})
    with pytest.raises(ValueError, match="disagree"):
        Batch(tensors={"a": torch.zeros(3)}, non_tensors={"text": ["x", "y"]})


def test_select_orders_and_copies():
    batch = make_batch()
    picked = batch.select([2, 0, 2])
    assert picked["ground_truth"] == ["gt2", "gt0", "gt2"]
    assert picked["response_ids"].tolist() == [[20, 21, 22], [0, 1, 2], [20, 21, 22]]
    assert picked["scores"].tolist() == [2.0, 0.0, 2.0]
    assert picked.meta == {"step": 7} and picked.meta is not batch.meta
    picked["scores"][0] = 100.0
    assert batch["scores"][2] == 2.0  # indexed copies, the source is untouched


def test_select_accepts_a_tensor_index():
    batch = make_batch()
    assert batch.select(torch.tensor([3, 1]))["ground_truth"] == ["gt3", "gt1"]


def test_split_chunks_with_shorter_last():
    parts = make_batch(size=5).split(2)
    assert [len(p) for p in parts] == [2, 2, 1]
    assert [p["ground_truth"] for p in parts] == [["gt0", "gt1"], ["gt2", "gt3"], ["gt4"]]
    assert parts[2]["scores"].tolist() == [4.0]


def test_split_larger_than_batch_and_invalid_size():
    batch = make_batch(size=3)
    assert [len(p) for p in batch.split(10)] == [3]
    with pytest.raises(ValueError, match=">= 1"):
        batch.split(0)


def test_split_then_concat_round_trips():
    batch = make_batch(size=5)
    again = Batch.concat(batch.split(2))
    assert again.keys() == batch.keys()
    for key in batch.tensors:
        assert torch.equal(again[key], batch[key])
    assert again["ground_truth"] == batch["ground_truth"]
    assert again.meta == batch.meta


def test_repeat_interleave():
    repeated = make_batch(size=2).repeat_interleave(3)
    assert repeated["ground_truth"] == ["gt0"] * 3 + ["gt1"] * 3
    assert repeated["scores"].tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    assert repeated["response_ids"][3:].tolist() == [[10, 11, 12]] * 3


def test_concat_right_pads_differing_widths_with_zero():
    first = Batch(tensors={"response_ids": torch.tensor([[5, 6]]), "scores": torch.tensor([1.0])}, non_tensors={"t": ["a"]})
    second = Batch(
        tensors={"response_ids": torch.tensor([[7, 8, 9, 4], [1, 2, 3, 3]]), "scores": torch.tensor([2.0, 3.0])},
        non_tensors={"t": ["b", "c"]},
    )
    joined = Batch.concat([first, second])
    assert joined["response_ids"].tolist() == [[5, 6, 0, 0], [7, 8, 9, 4], [1, 2, 3, 3]]
    assert joined["scores"].tolist() == [1.0, 2.0, 3.0]  # 1-D tensors are just concatenated
    assert joined["t"] == ["a", "b", "c"]


def test_concat_left_pads_prompts_so_they_still_end_where_the_response_starts():
    first = Batch(tensors={"prompt_ids": torch.tensor([[5, 6]]), "prompt_mask": torch.tensor([[1, 1]])})
    second = Batch(tensors={"prompt_ids": torch.tensor([[7, 8, 9]]), "prompt_mask": torch.tensor([[1, 1, 1]])})
    joined = Batch.concat([first, second])
    assert joined["prompt_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert joined["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_concat_pads_turn_and_version_tensors_with_minus_one():
    """Episode batches of different lengths and turn counts (an asynchronous multi-turn run
    joins groups played apart): padding must read "no turn", "no token", not turn 0 or version 0."""
    first = Batch(tensors={"turn_index": torch.tensor([[0, 0]]), "action_starts": torch.tensor([[0]]),
                           "token_versions": torch.tensor([[3, 3]])})
    second = Batch(tensors={"turn_index": torch.tensor([[0, -1, 1]]), "action_starts": torch.tensor([[0, 2]]),
                            "token_versions": torch.tensor([[4, -1, 4]])})
    joined = Batch.concat([first, second])
    assert joined["turn_index"].tolist() == [[0, 0, -1], [0, -1, 1]]
    assert joined["action_starts"].tolist() == [[0, -1], [0, 2]]
    assert joined["token_versions"].tolist() == [[3, 3, -1], [4, -1, 4]]


def test_concat_of_nothing_is_empty():
    assert len(Batch.concat([])) == 0


def test_set_adds_tensor_and_list_and_checks_length():
    batch = make_batch(size=2)
    assert batch.set("advantages", torch.ones(2, 3)) is batch
    batch.set("response_text", ("x", "y"))
    assert batch.non_tensors["response_text"] == ["x", "y"]  # stored as a list
    assert "advantages" in batch.tensors
    with pytest.raises(ValueError, match="advantages"):
        batch.set("advantages", torch.ones(3, 3))
    with pytest.raises(ValueError, match="response_text"):
        batch.set("response_text", ["only one"])


def test_set_on_empty_batch_defines_its_size():
    batch = Batch().set("scores", torch.zeros(5))
    assert len(batch) == 5


def test_to_keeps_everything():
    batch = make_batch()
    moved = batch.to("cpu")
    assert torch.equal(moved["response_ids"], batch["response_ids"])
    assert moved["ground_truth"] == batch["ground_truth"] and moved.meta == batch.meta
