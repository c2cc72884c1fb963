"""The trainer's bookkeeping of a rollout pool of several workers (:mod:`rlhf.distributed.async_rollout`):
which worker each requested group went to, and the groups that came back, handed on in stream
order.

The asynchronous source (:mod:`rlhf.rollout.async_source`) trains groups in the order it
requested them, the order one rollout process returns them in, and its staleness gate
(:func:`rlhf.rollout.staleness.earliest_version`) counts on it. Several workers each return
their own groups in that order, but not in order with each other: a group that comes back while
an earlier one is still out on another worker waits here (`held`) until every earlier one is
back. A checkpoint taken meanwhile saves a held group as responses begun
(:func:`finished_rows`), complete ones, so that the resumed run gets it back in its place.

Requests go to the worker with the fewest groups out (ties to the lower rank), so a resume's
requests, and the first ones, alternate over the workers, and a faster worker gets more.
Pure bookkeeping: no Ray here.
"""

from __future__ import annotations

import bisect
from collections import Counter

import torch

from rlhf.rollout.async_worker import GroupRequest, GroupResult
from rlhf.rollout.staleness import version_segments

RANK_FIELD = "rollout_rank"
"""The per-sample field a returned group's batch gets: the rank of the rollout worker that
generated it (samples.jsonl shows it; with one rollout process it is absent)."""


class StreamLedger:
    """Groups out on `ranks` rollout workers and groups back, released in stream order."""

    def __init__(self, ranks: int):
        self.ranks = ranks
        self.out: dict[int, tuple[int, int]] = {}
        """Group id -> (rank it was sent to, stream position), until it comes back."""
        self.held: list[tuple[int, GroupResult]] = []
        """(position, group) back before an earlier group, by position."""

    def assign(self, requests: list[GroupRequest]) -> dict[int, list[GroupRequest]]:
        """{rank: its requests}: each request, in the order given, to the rank with the fewest
        groups out at that moment (the lowest such rank)."""
        outstanding = self.outstanding()
        by_rank: dict[int, list[GroupRequest]] = {}
        for request in requests:
            rank = min(range(self.ranks), key=outstanding.__getitem__)  # the first of the least busy
            outstanding[rank] += 1
            self.out[request.group_id] = (rank, request.position)
            by_rank.setdefault(rank, []).append(request)
        return by_rank

    def returned(self, rank: int, groups: list[GroupResult]) -> list[GroupResult]:
        """Take `groups` back from `rank` (each tagged with it, :data:`RANK_FIELD`); returns
        every group now in order: back, and no earlier group still out."""
        for group in groups:
            _, position = self.out.pop(group.group_id)
            group.batch.set(RANK_FIELD, [rank] * len(group.batch))
            bisect.insort(self.held, (position, group), key=lambda item: item[0])
        first_out = min((position for _, position in self.out.values()), default=None)
        released = 0
        while released < len(self.held) and (first_out is None or self.held[released][0] < first_out):
            released += 1
        ready = [group for _, group in self.held[:released]]
        del self.held[:released]
        return ready

    def outstanding(self) -> list[int]:
        """Groups out, per rank."""
        counts = Counter(rank for rank, _ in self.out.values())
        return [counts[rank] for rank in range(self.ranks)]

    def snapshot_rows(self, begun: dict[int, list[dict]]) -> dict[int, list[dict]]:
        """What a checkpoint saves of the groups not handed on yet, {group id: rows begun} in
        stream order: `begun`, the rows the workers' snapshots hold (merged over the ranks), of
        the groups still out, and every held group's rows, complete (:func:`finished_rows`).
        A group handed on since its worker answered is left out (it is trained, not resumed)."""
        position = {group_id: place for group_id, (_, place) in self.out.items()}
        rows = {group_id: states for group_id, states in begun.items() if group_id in position}
        for place, group in self.held:
            position[group.group_id] = place
            rows[group.group_id] = finished_rows(group.batch)
        return dict(sorted(rows.items(), key=lambda item: position[item[0]]))


def finished_rows(batch) -> list[dict]:
    """The rows of a returned group as responses begun (`RowState.as_dict` of
    :mod:`rlhf.rollout.versioned`): its tokens (those with a version, EOS included), their
    logprobs (0 where the engine gave none) and [version, tokens] segments. Every row is
    complete, so the rollout worker hands the group back as it was, generating nothing (a
    multi-turn episode, which does not go on from responses begun, is played again; ReMax's
    baseline is sampled again)."""
    versions = batch["token_versions"]
    logprobs = batch["rollout_logprobs"] if "rollout_logprobs" in batch else torch.zeros(versions.shape)
    rows = []
    for ids, row_versions, row_logprobs in zip(batch["response_ids"], versions, logprobs):
        kept = row_versions >= 0
        rows.append({"tokens": ids[kept].tolist(), "logprobs": row_logprobs[kept].tolist(), "segments": version_segments(row_versions)})
    return rows
