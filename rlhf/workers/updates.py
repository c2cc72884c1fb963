"""The PPO-style update schedule shared by the actor and the critic.

`epochs` passes over the RL batch; each pass shuffles it and splits it into mini-batches (one
optimiser step each), each mini-batch into micro-batches (one forward/backward each). The
gradients of a mini-batch's micro-batches add up to exactly the gradient of the mini-batch
loss: each micro-batch loss is weighted by its share of the mini-batch's valid tokens (for
token-mean aggregation) or of its sequences (for sequence means).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch

from rlhf.data.batch import Batch, action_mask
from rlhf.data.padding import micro_batch_rows, trimmed
from rlhf.engines.base import TrainingEngine

MicroStep = Callable[[Batch, float], dict[str, torch.Tensor]]
"""(micro-batch, weight) -> detached stats; runs forward and `engine.backward(weight * loss)`."""


def run_updates(
    engine: TrainingEngine, batch: Batch, micro_step: MicroStep, *,
    epochs: int, mini_batch_size: int, micro_batch_size: int, loss_agg: str, generator: torch.Generator, max_tokens: int = 0,
) -> dict[str, float]:
    """Train `engine` on `batch`; returns every stat as the mean over optimiser steps of its
    mini-batch value (the micro-batches' stats weighted like their losses, so `pg_loss` is
    the loss of the whole mini-batch; a stat named `*_max` is the maximum instead), plus `grad_norm` (mean over the steps applied),
    `skipped_updates` (steps the engine skipped for a non-finite loss or gradient norm) and
    `lr` (after the last step).
    Micro-batches hold `micro_batch_size` rows, or fewer to stay within `max_tokens` (> 0)."""
    engine.module.train()
    history: dict[str, list[torch.Tensor]] = defaultdict(list)
    for _ in range(epochs):
        order = torch.randperm(len(batch), generator=generator)
        for mini in batch.select(order).split(mini_batch_size):
            scale = mini_batch_scale(engine, mini, loss_agg)
            mini_stats: dict[str, torch.Tensor] = {}
            # the mini-batch gradient does not depend on how its rows group into micro-batches:
            # rows of similar length together, each micro-batch cut to its own columns
            for rows in micro_batch_rows(mini, micro_batch_size, max_tokens, agreement(engine, max_tokens)):
                micro = mini.select(rows)
                weight = micro_weight(micro, mini, loss_agg)
                for key, value in micro_step(trimmed(micro), scale * weight).items():
                    add_stat(mini_stats, key, value.detach().float(), weight)  # on the device: no host sync per micro-batch
            for key, value in mini_stats.items():
                history[key].append(value)
            history["grad_norm"].append(torch.as_tensor(engine.step()).float())
    history = {key: [value.cpu() for value in values] for key, values in history.items()}  # the one host sync of the update
    metrics = {key: (torch.stack(values).max() if key.endswith("_max") else torch.stack(values).mean()).item() for key, values in history.items()}
    # a step with a non-finite loss or gradient norm was skipped by the engine (rlhf.engines.guards)
    norms = torch.stack(history["grad_norm"]) if history["grad_norm"] else torch.zeros(0)
    applied = torch.isfinite(norms)
    metrics["skipped_updates"] = float((~applied).sum())
    if applied.any():
        metrics["grad_norm"] = norms[applied].mean().item()
    metrics["lr"] = engine.lr
    return metrics


def add_stat(stats: dict[str, torch.Tensor], key: str, value: torch.Tensor, weight: float) -> None:
    """Fold one micro-batch's stat into its mini-batch's: the maximum for `*_max`, else the
    sum weighted like the micro-batch losses."""
    previous = stats.get(key)
    if key.endswith("_max"):
        stats[key] = value if previous is None else torch.maximum(previous, value)
    else:
        stats[key] = weight * value if previous is None else previous + weight * value


def agreement(engine: TrainingEngine, max_tokens: int) -> Callable[[int], int] | None:
    """How data-parallel ranks agree on a micro-batch count: a token budget gives each rank
    its own count, yet forwards under ZeRO-3 are collectives that every rank must join."""
    return engine.dp_max if max_tokens > 0 and engine.dp_size > 1 else None


def mini_batch_scale(engine: TrainingEngine, mini: Batch, loss_agg: str) -> float:
    """Correction of this rank's micro-batch weights for data parallelism.

    Each of W ranks holds 1/W of a mini-batch and the engine averages their gradients. For
    sequence means that already gives the mean over the whole mini-batch (shards are equal in
    size). For token-mean the ranks hold different numbers of valid tokens, so rank r's share
    must be its tokens T_r over all ranks' tokens ΣT: scale = W · T_r / ΣT (1 for W = 1).
    """
    if engine.dp_size == 1 or loss_agg != "token-mean":
        return 1.0
    tokens = float(action_mask(mini).sum())
    return engine.dp_size * tokens / max(1.0, engine.dp_sum(tokens))


def micro_weight(micro: Batch, mini: Batch, loss_agg: str) -> float:
    """The micro-batch's share of its mini-batch: of valid tokens for token-mean, else of
    sequences."""
    if loss_agg == "token-mean":
        return float(action_mask(micro).sum()) / max(1.0, float(action_mask(mini).sum()))
    return len(micro) / len(mini)
