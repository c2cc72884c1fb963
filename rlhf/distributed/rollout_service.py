"""The rollout side of an asynchronous Ray run, in each worker of the rollout pool: the stream's
loop (:func:`rlhf.rollout.async_worker.serve`) in a thread over in-process queues, a
:class:`ThreadMailbox` and the worker's own rollout engine. The loop holds the engine's lock
from taking weights to the end of a generate call, so a controller call to the rollout role
(held-out evaluation, the sync check) waits for the call under way, then runs with the newest
weights posted (:meth:`RolloutService.holding`). The trainer's side is
:mod:`rlhf.distributed.async_rollout`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import Iterable

import torch

from rlhf.rollout.async_worker import STOP, Control, WorkerSpec, serve


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
        """Keep the tensors as `version` (not copied: the weight channel hands over fresh
        buffers, which nothing changes afterwards); returns their bytes."""
        received = 0
        with self.lock:
            for name, tensor in named_tensors:
                self.tensors[name] = tensor.detach()
                received += tensor.numel() * tensor.element_size()
            self._version = version
        return received

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
