"""The trainer's bookkeeping of a rollout pool of several workers, without Ray: requests spread
to the least busy worker, groups handed on in stream order whatever order the workers return
them in, and a group held back for an earlier one saved by a checkpoint as complete responses
begun, which a rollout worker hands back unchanged (with newer weights in its engine)."""

import copy

import torch
from test_async_rollout_service import groups_of, spec
from tiny_helpers import sharpen_weights

from rlhf.data.batch import Batch
from rlhf.data.prompts import prompt_batch
from rlhf.distributed.rollout_service import RolloutService
from rlhf.distributed.stream_ledger import RANK_FIELD, StreamLedger, finished_rows
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.async_worker import GroupRequest, GroupResult, dumps
from rlhf.rollout.hf import HFRolloutEngine


def requests(*group_ids: int) -> list[GroupRequest]:
    """Requests whose stream position is their group id."""
    return [GroupRequest(group_id, group_id, 0, None) for group_id in group_ids]


def result(group_id: int) -> GroupResult:
    return GroupResult(group_id, Batch({"response_ids": torch.full((2, 3), group_id)}))


def prompt_request(group_id: int, earliest: int, prompts: Batch, prefixes=None) -> GroupRequest:
    """Group `group_id` at that stream position: the first prompt, twice."""
    one = prompts.select([0, 0])
    return GroupRequest(group_id, group_id, earliest, Batch(one.tensors, one.non_tensors, {}), prefixes)


def ids(groups: list[GroupResult]) -> list[int]:
    return [group.group_id for group in groups]


def test_requests_go_to_the_worker_with_the_fewest_groups_out():
    ledger = StreamLedger(2)
    # the first requests (and a resume's) alternate over the workers
    assert {rank: ids(items) for rank, items in ledger.assign(requests(0, 1, 2, 3, 4)).items()} == {0: [0, 2, 4], 1: [1, 3]}
    assert ledger.outstanding() == [3, 2]
    ledger.returned(1, [result(1), result(3)])
    # the worker that is done gets the next ones until it has as many out as the other
    assert {rank: ids(items) for rank, items in ledger.assign(requests(5, 6, 7, 8)).items()} == {1: [5, 6, 7], 0: [8]}
    assert ledger.outstanding() == [4, 3]


def test_groups_are_handed_on_in_stream_order_whatever_order_they_come_back_in():
    ledger = StreamLedger(2)
    ledger.assign(requests(0, 1, 2, 3, 4, 5))  # rank 0: 0, 2, 4; rank 1: 1, 3, 5
    assert ledger.returned(1, [result(1), result(3)]) == []  # group 0 is still out
    assert ids(ledger.held[i][1] for i in range(2)) == [1, 3]
    assert ids(ledger.returned(0, [result(0)])) == [0, 1]  # 2 is still out: 3 waits
    assert ids(ledger.returned(0, [result(2), result(4)])) == [2, 3, 4]
    released = ledger.returned(1, [result(5)])
    assert ids(released) == [5] and ledger.held == [] and ledger.outstanding() == [0, 0]
    assert released[0].batch[RANK_FIELD] == [1, 1]


def test_a_snapshot_merges_every_worker_s_rows_begun_and_the_held_groups_in_stream_order():
    ledger = StreamLedger(2)
    ledger.assign(requests(0, 1, 2, 3, 4))  # rank 0: 0, 2, 4; rank 1: 1, 3
    held = GroupResult(3, Batch({"response_ids": torch.tensor([[7, 2]]), "token_versions": torch.tensor([[1, 1]]),
                                 "rollout_logprobs": torch.tensor([[-0.5, -0.25]])}))
    assert ledger.returned(1, [held]) == []
    begun_by_rank = [{4: ["rank 0, group 4"], 2: ["rank 0, group 2"], 0: ["rank 0, group 0"]}, {1: ["rank 1, group 1"]}]
    assert ids(ledger.returned(0, [result(0)])) == [0]  # back after its worker answered: trained, not resumed
    merged = ledger.snapshot_rows({**begun_by_rank[1], **begun_by_rank[0]})
    assert list(merged) == [1, 2, 3, 4]
    assert merged[3] == [{"tokens": [7, 2], "logprobs": [-0.5, -0.25], "segments": [[1, 2]]}]
    assert merged[1] == ["rank 1, group 1"] and merged[4] == ["rank 0, group 4"]


def test_a_held_group_is_checkpointed_as_complete_responses_that_come_back_unchanged(tmp_path):
    """A snapshot saves a group held back for an earlier one as its rows (finished_rows); the
    resumed run requests it with them, on any worker: the worker generates nothing and returns
    the same tokens, logprobs and versions, although newer weights are in its engine."""
    path = build_tiny_model(tmp_path / "model", seed=0)
    tokenizer = load_tokenizer(str(path))
    old = sharpen_weights(load_causal_lm(str(path), torch.device("cpu")).eval(), seed=0)
    new = sharpen_weights(copy.deepcopy(old), seed=1)
    prompts = prompt_batch([{"prompt": "30+4=", "ground_truth": "34"}], tokenizer)
    service = RolloutService(HFRolloutEngine(copy.deepcopy(old), tokenizer), spec(), version=0)
    try:
        ledger = StreamLedger(2)
        ledger.assign([prompt_request(0, 0, prompts), prompt_request(1, 0, prompts)])
        service.submit(dumps([prompt_request(1, 0, prompts)]))
        assert ledger.returned(1, groups_of(service)) == []  # group 0 is out on rank 0
        (held,) = ledger.snapshot_rows({}).items()
        assert held[0] == 1 and len(held[1]) == 2 and all(row["segments"] == [[0, len(row["tokens"])]] for row in held[1])
        original = ledger.held[0][1].batch

        service.post(new.named_parameters(), 1)
        service.submit(dumps([prompt_request(1, 0, prompts, prefixes=held[1])]))
        (again,) = groups_of(service)
        for name in ("response_ids", "response_mask", "token_versions", "rollout_logprobs"):
            assert torch.equal(again.batch[name], original[name]), name
        # the newer weights answer the same prompt otherwise: the group above was not generated again
        service.submit(dumps([prompt_request(2, 1, prompts)]))
        (other,) = groups_of(service)
        assert set(other.batch["token_versions"][other.batch["response_mask"].bool()].tolist()) == {1}
        assert not torch.equal(other.batch["response_ids"], original["response_ids"])
    finally:
        service.stop()


def test_finished_rows_keep_every_segment_of_a_partial_rollout():
    """Rows whose tokens span two versions (a partial rollout) keep both segments; padding
    (version -1) is not a token."""
    batch = Batch({"response_ids": torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]]),
                   "token_versions": torch.tensor([[3, 3, 4, 4], [4, 4, -1, -1]]),
                   "rollout_logprobs": torch.tensor([[-0.5, -1.0, -1.5, -2.0], [-0.25, -0.75, 0.0, 0.0]])})
    assert finished_rows(batch) == [
        {"tokens": [5, 6, 7, 2], "logprobs": [-0.5, -1.0, -1.5, -2.0], "segments": [[3, 2], [4, 2]]},
        {"tokens": [8, 2], "logprobs": [-0.25, -0.75], "segments": [[4, 2]]},
    ]
