"""The training-engine protocol: what the actor (and later the critic) needs from a backend."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Protocol

import torch


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule of one engine (plain numbers, taken from the recipe)."""

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    total_steps: int = 1
    grad_clip: float = 1.0


class TrainingEngine(Protocol):
    """Forward for logprobs, backward, optimiser step, full weights out, state in and out."""

    module: torch.nn.Module

    def autocast(self) -> contextlib.AbstractContextManager: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def step(self) -> torch.Tensor:
        """Clip, step the optimiser and the LR schedule, zero the grads; returns the grad norm."""
        ...

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full-precision named parameters, for syncing to the rollout engine and export."""
        ...

    @property
    def lr(self) -> float: ...

    def save_checkpoint(self, directory) -> None:
        """Weights, optimiser and schedule state into `directory` (every rank calls it)."""
        ...

    def load_checkpoint(self, directory) -> None: ...

    dp_size: int
    """Data-parallel ranks training together; their gradients are averaged at each step."""

    def dp_sum(self, value: float) -> float:
        """`value` summed over the data-parallel ranks (every rank must call it)."""
        ...

    def dp_max(self, value: int) -> int:
        """The largest `value` of the data-parallel ranks (every rank must call it)."""
        ...


def lr_multiplier(step: int, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Linear warm-up from 0 over `warmup_steps`, then constant or cosine down to 0.1.

    `step` counts optimiser steps already taken (0 for the first).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown lr schedule {schedule!r}; valid: constant, cosine")
