"""Asynchronous RL on the Ray backend: the rollout side is the rollout pool's worker group
(`resources.rollout` names a pool of its own), each of its workers serving the stream in a
thread beside the calls the controller makes to it.

Trainer's side, :class:`RayRolloutSide` (the same interface as the local
:class:`rlhf.rollout.rollout_process.RolloutProcess`, so :mod:`rlhf.rollout.async_source`
reads the same on both backends):

    requests   each to the rollout worker with the fewest groups outstanding
    results    one long-poll per worker in flight (`RolloutService.receive`), answered as soon
               as that worker has a message
    weights    after an update, actor rank 0 broadcasts the buckets (the run's weight channel,
               :mod:`rlhf.distributed.weight_channel`) and each rollout worker copies them into
               its mailbox under the new version: the trainer waits for the transfer, not for
               the generation under way, which takes them at its next call

Rollout worker's side, :class:`RolloutService`: the loop of :func:`rlhf.rollout.async_worker.serve`
in a thread, over in-process queues, a :class:`ThreadMailbox` and the worker's own rollout
engine. The loop holds the engine's lock from taking weights to the end of a generate call,
so a controller call to the rollout role (held-out evaluation, the sync check) waits for the
call under way, then runs with the newest weights posted (:meth:`RolloutService.holding`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from typing import Iterable

import torch

from rlhf.rollout.async_worker import STOP, Control, GroupRequest, GroupResult, WorkerSpec, dumps, loads, serve
from rlhf.rollout.rollout_process import RolloutProcessError


class ThreadValues:
    """`Array` and `Value` of a multiprocessing context, for threads of one process."""

    @staticmethod
    def Array(typecode: str, size: int) -> list:  # noqa: N802 -- multiprocessing's names
        return [0.0] * size

    @staticmethod
    def Value(typecode: str, value, lock: bool = False):  # noqa: N802
        return _Cell(value)


class _Cell:
    def __init__(self, value):
        self.value = value


class ThreadMailbox:
    """The weights posted to one rollout worker, with their version, and the version its engine
    holds (the one record of it: the serving loop and the controller's calls both load)."""

    def __init__(self, version: int):
        self.tensors: dict[str, torch.Tensor] = {}
        self.lock = threading.Lock()
        self._version, self.loaded = version, version

    @property
    def version(self) -> int:
        return self._version

    def post(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> int:
        """Keep copies of the tensors as `version`; returns the bytes copied."""
        copied = 0
        with self.lock:
            for name, tensor in named_tensors:
                self.tensors[name] = tensor.detach().clone()
                copied += tensor.numel() * tensor.element_size()
            self._version = version
        return copied

    def fetch(self, engine, held: int) -> int:
        """Load the newest weights into `engine` when its version is older; returns the version
        it holds (`held` is what the caller believes; the mailbox knows)."""
        with self.lock:
            if self._version > self.loaded:
                if self.tensors:
                    engine.update_weights(self.tensors.items())
                self.loaded = self._version
            return self.loaded


class RolloutService:
    """The stream's loop in a thread of a rollout worker (see the module docstring)."""

    def __init__(self, engine, spec: WorkerSpec, version: int):
        self.engine, self.spec = engine, spec
        self.requests: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.control = Control(ThreadValues)
        self.mailbox = ThreadMailbox(version)
        self.engine_lock = threading.RLock()
        self.thread = threading.Thread(target=serve, args=(engine, spec, self.requests, self.results, self.mailbox, self.control, self.engine_lock),
                                       name="rlhf-rollout-service", daemon=True)
        self.thread.start()

    def submit(self, message: bytes) -> None:
        self.requests.put(message)

    def receive(self, timeout: float) -> list:
        """Every message waiting (waiting up to `timeout` seconds for the first)."""
        messages = []
        with contextlib.suppress(queue.Empty):
            messages.append(self.results.get(timeout=timeout))
            while True:
                messages.append(self.results.get_nowait())
        if not messages and not self.thread.is_alive():
            messages.append(("error", "RuntimeError: the rollout service's thread ended without a message"))
        return messages

    def want(self, position: int) -> None:
        self.control.wanted.value = position

    def ask_snapshot(self) -> int:
        """Ask for a snapshot; returns its number (the answer carries it)."""
        self.control.snapshots.value += 1
        return int(self.control.snapshots.value)

    def seconds(self) -> tuple[float, float]:
        return float(self.control.clock[0]), float(self.control.clock[1])

    def post(self, named_tensors, version: int) -> int:
        return self.mailbox.post(named_tensors, version)

    @contextlib.contextmanager
    def holding(self):
        """The engine, between the loop's calls, with the newest weights posted."""
        with self.engine_lock:
            self.mailbox.fetch(self.engine, -1)
            yield self.engine

    def stop(self, timeout: float = 10.0) -> None:
        self.requests.put(STOP)
        self.thread.join(timeout)


class RayRolloutSide:
    """The trainer's handle on the rollout pool's workers (see the module docstring)."""

    def __init__(self, processes, spec: WorkerSpec, version: int):
        """Start the service on every worker of the rollout pool of `processes`
        (:class:`rlhf.distributed.ray_backend.RayProcesses`), its engines holding `version`."""
        from rlhf.distributed.group import wait_calls

        self.processes = processes
        self.group = processes.groups[processes.rollout_pool]
        self.timeout_s = self.group.dist.timeout_s
        wait_calls([self.group.submit("start_rollout_service", spec, version, label="rollout.start_service")], self.group.dist.startup_timeout_s)
        processes.streaming = True  # from now on weights reach the rollout pool through the services' mailboxes
        self.outstanding = [0] * self.group.world_size  # groups requested, not yet back, per rank
        self.owner: dict[int, int] = {}  # group id -> rank
        self.polls = {rank: self._poll(rank) for rank in range(self.group.world_size)}
        self.closed = False

    @property
    def description(self) -> str:
        return f"the rollout services of {self.group.description}"

    def submit(self, requests: list[GroupRequest]) -> None:
        """Each request to the rank with the fewest groups outstanding."""
        by_rank: dict[int, list[GroupRequest]] = {}
        for request in requests:
            rank = min(range(len(self.outstanding)), key=self.outstanding.__getitem__)
            self.outstanding[rank] += 1
            self.owner[request.group_id] = rank
            by_rank.setdefault(rank, []).append(request)
        for rank, items in by_rank.items():
            self.group.workers[rank].rollout_service.remote("submit", dumps(items))

    def want(self, position: int) -> None:
        for worker in self.group.workers:
            worker.rollout_service.remote("want", position)

    def receive(self, timeout: float) -> list[GroupResult] | None:
        groups = []
        for _, message in self._messages(timeout):
            if not (isinstance(message, tuple) and message[0] == "snapshot"):
                groups += self._returned(loads(message))
        return groups or None

    def snapshot(self, timeout: float) -> tuple[list[GroupResult], dict]:
        """Every worker's snapshot: (groups finished before the answers, {group id: [row state, ...]})."""
        from rlhf.distributed.group import wait_calls

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
                    finished += self._returned(loads(message))
        if waiting:
            raise RolloutProcessError(f"rank(s) {sorted(waiting)} of {self.description} did not answer a checkpoint's snapshot within "
                                      f"{timeout:.0f} s (async_training.timeout_s)")
        return finished, begun

    def post(self, roles, updated: bool, version: int) -> int:
        """Publish `version`: with an update, actor rank 0 broadcasts the weights into every
        rollout worker's mailbox; without one, the same weights under the new number."""
        from rlhf.distributed.group import wait_calls

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
        from rlhf.distributed.group import wait_calls

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

    def _returned(self, groups: list[GroupResult]) -> list[GroupResult]:
        for group in groups:
            self.outstanding[self.owner.pop(group.group_id)] -= 1
        return groups
