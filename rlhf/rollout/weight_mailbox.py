"""Weights from the trainer process to the rollout process, through shared memory.

One set of tensors in shared memory (the policy's parameters, under its parameter names), a
lock and a version number. The trainer `post`s new weights: it takes the lock, copies its
tensors in and raises the version. The rollout process `fetch`es between generation steps
when the version moved: under the lock it copies the tensors into its own engine. Neither side
waits longer than one copy takes, and a rollout process that misses a version simply takes the
newer one (the trainer never waits for it to catch up).
"""

from __future__ import annotations

from typing import Iterable

import torch


class WeightMailbox:
    """Shared tensors + lock + version; picklable into a spawned process (torch shares the
    tensors' storage instead of copying it)."""

    def __init__(self, named_tensors: Iterable[tuple[str, torch.Tensor]], context, version: int = 0):
        """Shared copies of `named_tensors`, published as `version`."""
        self.tensors = {name: tensor.detach().to("cpu", copy=True).share_memory_() for name, tensor in named_tensors}
        self.lock = context.Lock()
        self._version = context.Value("q", version, lock=False)

    @property
    def version(self) -> int:
        """The newest version posted (a plain read: a stale answer only delays a fetch)."""
        return int(self._version.value)

    def post(self, named_tensors: Iterable[tuple[str, torch.Tensor]], version: int) -> int:
        """Copy the trainer's tensors in and publish `version`; returns the bytes copied."""
        copied = 0
        with self.lock:
            for name, tensor in named_tensors:
                target = self.tensors[name]
                target.copy_(tensor.detach())
                copied += target.numel() * target.element_size()
            self._version.value = version
        return copied

    def fetch(self, engine, held: int) -> int:
        """Load the newest weights into `engine` (its `update_weights`) when they are newer than
        version `held`; returns the version the engine now holds."""
        if self.version <= held:
            return held
        with self.lock:
            version = self.version
            engine.update_weights(self.tensors.items())
        return version
