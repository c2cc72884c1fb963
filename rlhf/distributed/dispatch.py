"""How a call on a worker group maps onto its ranks, as pure functions of Batches.

A role method declares one of three dispatch modes:

* ``split``: the Batch is cut into one contiguous shard per data-parallel rank. When B is not
  divisible by the number of ranks W, the last row is repeated until it is (every rank then
  runs the same number of micro-batches, which ZeRO-3's collective forwards need), and the
  copies are dropped again when the ranks' results are gathered.
* ``all``: every rank gets the same arguments (weight syncs, checkpoints).
* ``rank_zero``: only rank 0 runs the call (it writes files for the group).

Generation with tensor-parallel engines splits over engines instead of ranks: every rank of
an engine gets the engine's shard (:func:`shard_for_engines`).

Results of ``split`` calls come back in rank order and are concatenated into one Batch or one
tensor; metrics dicts of the ranks are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import torch

from rlhf.data.batch import Batch

SPLIT, ALL, RANK_ZERO = "split", "all", "rank_zero"
DISPATCH_MODES = (SPLIT, ALL, RANK_ZERO)

Gathered = TypeVar("Gathered", Batch, torch.Tensor)


def shard_batch(batch: Batch, world_size: int, *, allow_padding: bool = True) -> tuple[list[Batch], int]:
    """Cut `batch` into `world_size` contiguous shards of equal size.

    Args:
        batch: B rows.
        world_size: W ranks.
        allow_padding: repeat the last row until W divides the rows; when False, a B that W does
            not divide is an error (training batches must not count a row twice).
    Returns:
        (W shards of ceil(B / W) rows each, the number of padding rows added at the end).
    """
    rows = len(batch)
    per_rank = math.ceil(rows / world_size)
    padding = per_rank * world_size - rows
    if padding and not allow_padding:
        raise ValueError(f"a batch of {rows} rows does not split evenly over {world_size} data-parallel ranks")
    if rows == 0:
        raise ValueError("cannot dispatch an empty batch")
    index = list(range(rows)) + [rows - 1] * padding
    return [batch.select(index[rank * per_rank : (rank + 1) * per_rank]) for rank in range(world_size)], padding


def gather_shards(parts: Sequence[Gathered], padding: int) -> Gathered:
    """The ranks' results in rank order as one Batch (or tensor along dim 0), without the last
    `padding` rows that :func:`shard_batch` added."""
    whole = Batch.concat(parts) if isinstance(parts[0], Batch) else _cat_rows(list(parts))
    if not padding:
        return whole
    keep = len(whole) - padding
    return whole.select(range(keep)) if isinstance(whole, Batch) else whole[:keep]


def _cat_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0, right-padding dim 1 with zeros when the ranks' widths differ
    (responses of different lengths)."""
    if parts[0].dim() < 2 or len({part.shape[1] for part in parts}) == 1:
        return torch.cat(parts)
    width = max(part.shape[1] for part in parts)
    return torch.cat([torch.nn.functional.pad(part, (0, width - part.shape[1])) for part in parts])


def shard_for_engines(batch: Batch, world_size: int, tensor_parallel_size: int) -> tuple[list[Batch], int]:
    """One shard per rollout engine, repeated for every rank of that engine.

    With tensor parallelism t, ranks t·k .. t·k + t − 1 run engine k together and must all get
    its shard; the W / t engines split the batch as :func:`shard_batch` does.

    Returns:
        (W per-rank batches, the number of padding rows added at the end).
    """
    shards, padding = shard_batch(batch, world_size // tensor_parallel_size)
    return [shards[rank // tensor_parallel_size] for rank in range(world_size)], padding


def gather_engines(per_rank: Sequence[Gathered], tensor_parallel_size: int, padding: int) -> Gathered:
    """The engines' results (the ranks of one engine return the same: keep the first's)."""
    return gather_shards(list(per_rank[::tensor_parallel_size]), padding)


WEIGHT_KEY = "_shard_weight"
"""Key of the weight a rank attaches to the metrics of a training call (see :func:`shard_weight`)."""


def shard_weight(shard: Batch, loss_agg: str) -> float:
    """What a rank's loss averages over: its valid response tokens for token-mean aggregation,
    else its sequences. The global loss is the mean of the ranks' losses weighted by this."""
    return float(shard["response_mask"].sum()) if loss_agg == "token-mean" else float(len(shard))


def mean_metrics(per_rank: Sequence[dict[str, float]]) -> dict[str, float]:
    """Every metric averaged over ranks, weighted by each rank's `WEIGHT_KEY` entry when there
    is one (so a token-mean loss of the whole batch comes out as one process computes it)."""
    weights = [metrics.get(WEIGHT_KEY, 1.0) for metrics in per_rank]
    if sum(weights) == 0:  # no rank had a valid token: count them alike
        weights = [1.0] * len(per_rank)
    total = sum(weights)
    keys = [key for key in per_rank[0] if key != WEIGHT_KEY]
    return {key: sum(w * metrics[key] for w, metrics in zip(weights, per_rank)) / total for key in keys}
