"""The trainer's handle on the rollout process of an asynchronous run: start it, send it
requests, take its groups and snapshots, stop it. The process itself is
:mod:`rlhf.rollout.async_worker`."""

from __future__ import annotations

import contextlib
import queue
import time

import torch.multiprocessing as torch_mp

from rlhf.rollout.async_worker import STOP, Control, GroupRequest, GroupResult, WorkerSpec, dumps, loads, worker_main
from rlhf.rollout.weight_mailbox import WeightMailbox


class RolloutProcessError(RuntimeError):
    """The rollout process raised, died or stopped answering; the run stops."""


class RolloutProcess:
    """The trainer's handle: start, submit requests, receive groups, stop."""

    def __init__(self, spec: WorkerSpec, named_weights, version: int):
        """Start the process with `named_weights` as policy version `version`."""
        context = torch_mp.get_context("spawn")
        self.mailbox = WeightMailbox(named_weights, context, version)
        self.requests, self.results = context.Queue(), context.Queue()
        self.control = Control(context)
        self.process = context.Process(target=worker_main, args=(spec, self.requests, self.results, self.mailbox, self.control),
                                       name="rlhf-rollout", daemon=True)
        self.process.start()

    @property
    def description(self) -> str:
        return f"the rollout process (pid {self.process.pid})"

    def submit(self, requests: list[GroupRequest]) -> None:
        self.requests.put(dumps(requests))

    def post(self, roles, updated: bool, version: int) -> int:
        """Publish policy `version`: the actor's weights when `updated`, else the same weights
        under the new number; returns the bytes copied."""
        return self.mailbox.post(roles.actor.named_weights() if updated else [], version)

    def want(self, position: int) -> None:
        """The trainer waits for the group at stream `position`: start it whatever its gate."""
        self.control.wanted.value = position

    def receive(self, timeout: float) -> list[GroupResult] | None:
        """The groups of the next finished generate call, or None when none came within
        `timeout` seconds; raises RolloutProcessError when the process reported an error or
        is dead."""
        message = self._next_message(timeout)
        if message is None or (isinstance(message, tuple) and message[0] == "snapshot"):  # an answer nobody waits for now
            return None
        return loads(message)

    def snapshot(self, timeout: float) -> tuple[list[GroupResult], dict]:
        """Ask for the responses begun: (the groups finished before the answer, {group id:
        [row state, ...]} of the groups being generated)."""
        self.control.snapshots.value += 1
        asked, finished = int(self.control.snapshots.value), []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self._next_message(min(1.0, max(0.01, deadline - time.monotonic())))
            if isinstance(message, tuple) and message[0] == "snapshot":
                if message[1] == asked:
                    return finished, message[2]
            elif message is not None:
                finished += loads(message)
        raise RolloutProcessError(f"{self.description} did not answer a checkpoint's snapshot within {timeout:.0f} s (async_training.timeout_s)")

    def _next_message(self, timeout: float):
        """The next message, or None after `timeout` seconds; raises RolloutProcessError when
        the process reported an error or is dead."""
        try:
            message = self.results.get(timeout=timeout)
        except queue.Empty:
            if not self.process.is_alive():
                raise RolloutProcessError(f"{self.description} died (exit code {self.process.exitcode}) without a message; "
                                          "the run stops (resume from the last checkpoint)") from None
            return None
        if isinstance(message, tuple) and message[0] == "error":
            raise RolloutProcessError(f"{self.description} failed: {message[1]}")
        return message

    def seconds(self) -> tuple[float, float]:
        """(seconds the process waited for requests or weights, seconds it generated) since it started."""
        return float(self.control.clock[0]), float(self.control.clock[1])

    def close(self) -> None:
        """Stop the process: STOP, then terminate, then kill; never leaves it running."""
        if self.process.is_alive():
            self.requests.put(STOP)
            deadline = time.monotonic() + 10
            while self.process.is_alive() and time.monotonic() < deadline:
                with contextlib.suppress(queue.Empty):  # drained, so the process's queue can flush and exit
                    self.results.get(timeout=0.05)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for channel in (self.requests, self.results):
            channel.cancel_join_thread()
            channel.close()
