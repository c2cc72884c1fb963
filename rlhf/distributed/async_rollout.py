"""Asynchronous RL on the Ray backend: the rollout side is the rollout pool's worker group
(`resources.rollout` names a pool of its own), each of its workers serving the stream in a
thread beside the calls the controller makes to it.

Trainer's side, :class:`RayRolloutSide` (the same interface as the local
:class:`rlhf.rollout.rollout_process.RolloutProcess`, so :mod:`rlhf.rollout.async_source`
reads the same on both backends):

    requests   each to the rollout worker with the fewest groups outstanding
    results    one long-poll per worker in flight (`RolloutService.receive`), answered as soon
               as that worker has a message; groups are handed on in stream order, a group
               back before an earlier one waits for it (:mod:`rlhf.distributed.stream_ledger`),
               each tagged with the rank that generated it (`rollout_rank`)
    weights    after an update, actor rank 0 broadcasts the buckets (the run's weight channel,
               :mod:`rlhf.distributed.weight_channel`) and each rollout worker copies them into
               its mailbox under the new version: the trainer waits for the transfer, not for
               the generation under way, which takes them at its next call
    snapshots  every worker's responses begun, merged, with the groups held back for an earlier
               one saved as responses begun too (complete ones): the resumed run requests them
               again, spread over the workers, and gets them back in their place

Rollout worker's side: :class:`rlhf.distributed.rollout_service.RolloutService`, the loop of
:func:`rlhf.rollout.async_worker.serve` in a thread of each rollout worker.
"""

from __future__ import annotations

import contextlib
import time

from rlhf.distributed.group import wait_calls
from rlhf.distributed.stream_ledger import StreamLedger
from rlhf.rollout.async_worker import GroupRequest, GroupResult, WorkerSpec, dumps, loads
from rlhf.rollout.rollout_process import RolloutProcessError


class RayRolloutSide:
    """The trainer's handle on the rollout pool's workers (see the module docstring)."""

    def __init__(self, processes, spec: WorkerSpec, version: int):
        """Start the service on every worker of the rollout pool of `processes`
        (:class:`rlhf.distributed.ray_backend.RayProcesses`), its engines holding `version`."""
        self.processes = processes
        self.group = processes.groups[processes.rollout_pool]
        self.timeout_s = self.group.dist.timeout_s
        wait_calls([self.group.submit("start_rollout_service", spec, version, label="rollout.start_service")], self.group.dist.startup_timeout_s)
        processes.streaming = True  # from now on weights reach the rollout pool through the services' mailboxes
        self.ledger = StreamLedger(self.group.world_size)
        self.polls = {rank: self._poll(rank) for rank in range(self.group.world_size)}
        self.closed = False

    @property
    def description(self) -> str:
        return f"the rollout services of {self.group.description}"

    def submit(self, requests: list[GroupRequest]) -> None:
        """Each request to the rank with the fewest groups outstanding."""
        for rank, items in self.ledger.assign(requests).items():
            self.group.workers[rank].rollout_service.remote("submit", dumps(items))

    def want(self, position: int) -> None:
        for worker in self.group.workers:
            worker.rollout_service.remote("want", position)

    def receive(self, timeout: float) -> list[GroupResult] | None:
        """The groups now in stream order (None: none), waiting up to `timeout` s for a message."""
        groups = []
        for rank, message in self._messages(timeout):
            if not (isinstance(message, tuple) and message[0] == "snapshot"):
                groups += self.ledger.returned(rank, loads(message))
        return groups or None

    def snapshot(self, timeout: float) -> tuple[list[GroupResult], dict]:
        """Every worker's snapshot: (groups back in stream order before the answers, {group id:
        [row state, ...]} of the groups begun, and of those held back for an earlier one)."""
        asked = wait_calls([self.group.submit("rollout_service", "ask_snapshot", label="rollout.ask_snapshot")], timeout)[0]
        waiting, finished, begun = set(range(self.group.world_size)), [], {}
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for rank, message in self._messages(min(1.0, max(0.01, deadline - time.monotonic()))):
                if isinstance(message, tuple) and message[0] == "snapshot":
                    if message[1] == asked[rank]:
                        begun.update(message[2])
                        waiting.discard(rank)
                else:
                    finished += self.ledger.returned(rank, loads(message))
        if waiting:
            raise RolloutProcessError(f"rank(s) {sorted(waiting)} of {self.description} did not answer a checkpoint's snapshot within "
                                      f"{timeout:.0f} s (async_training.timeout_s)")
        return finished, self.ledger.snapshot_rows(begun)

    def post(self, roles, updated: bool, version: int) -> int:
        """Publish `version`: with an update, actor rank 0 broadcasts the weights into every
        rollout worker's mailbox; without one, the same weights under the new number."""
        actor = self.processes.groups[self.processes.actor_pool]
        if not updated:
            wait_calls([self.group.submit("rollout_service", "post", [], version, label="rollout.post")], self.timeout_s)
            return 0
        calls = [actor.submit("send_weights", self.processes.bucket_bytes, label="actor.send_weights"),
                 self.group.submit("receive_weights_for", version, label="rollout.receive_weights_for")]
        _, received = wait_calls(calls, self.timeout_s)
        return sum(received)

    def seconds(self) -> tuple[float, float]:
        """(waiting, generating) seconds since the services started, summed over the rollout workers."""
        clocks = wait_calls([self.group.submit("rollout_service", "seconds", label="rollout.seconds")], self.timeout_s)[0]
        return sum(clock[0] for clock in clocks), sum(clock[1] for clock in clocks)

    def close(self) -> None:
        """Stop every service (the workers themselves live on until the groups shut down)."""
        if self.closed:
            return
        self.closed = True
        self.processes.streaming = False
        import ray

        with contextlib.suppress(Exception):
            ray.get([worker.rollout_service.remote("stop") for worker in self.group.workers], timeout=30)

    # -- messages ---------------------------------------------------------------------------

    def _poll(self, rank: int):
        return self.group.workers[rank].poll_rollout_service.remote(0.5)

    def _messages(self, timeout: float) -> list[tuple[int, object]]:
        """[(rank, message)] that arrived within `timeout` seconds; raises RolloutProcessError
        when a worker died or its service failed."""
        import ray

        ready, _ = ray.wait(list(self.polls.values()), num_returns=1, timeout=timeout)
        out = []
        for rank, ref in list(self.polls.items()):
            if ref not in ready:
                continue
            try:
                messages = ray.get(ref)
            except ray.exceptions.RayError as error:
                self.group.broken = True
                raise RolloutProcessError(f"rank {rank} of {self.description} died or failed: {str(error).strip().splitlines()[0]}; "
                                          "the run stops (resume from the last checkpoint)") from None
            self.polls[rank] = self._poll(rank)
            for message in messages:
                if isinstance(message, tuple) and message[0] == "error":
                    raise RolloutProcessError(f"rank {rank} of {self.description} failed: {message[1]}")
                out.append((rank, message))
        return out
