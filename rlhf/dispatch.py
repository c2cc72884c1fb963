"""How a call on a worker group maps onto its ranks, declared once next to each role method.

A role method says how its arguments spread over the N ranks of the group that hosts it and
how the ranks' answers come back as one, with the :func:`dispatch` decorator:

    class ActorWorker:
        @dispatch(SPLIT)
        def compute_logprobs(self, batch): ...

The decorator changes nothing in-process (the local backend calls the method directly); the
worker-group proxy of the Ray backend (:mod:`rlhf.distributed.proxy`) reads it, so one proxy
serves every role and the controller's code is the same for 1 rank or 64. Modes:

* ``split``: the first argument (a Batch, or a list of rows) is cut into one contiguous shard
  per rank. When B is not divisible by the number of ranks W, the last row is repeated until it
  is (every rank then runs the same number of micro-batches, which ZeRO-3's collective forwards
  need); the copies are dropped again when the ranks' results (a Batch, a tensor or a list) are
  concatenated in rank order.
* ``split_exact``: a training call. Shards must be equal without padding (no row may count
  twice); the results are metrics dicts, averaged over the ranks with the weight that the
  role's method named by ``weight`` gives each shard (its valid tokens for a token-mean loss).
* ``engines``: generation with tensor-parallel engines splits over engines instead of ranks:
  every rank of engine k gets engine k's shard, and one answer per engine is kept.
* ``all``: every rank gets the same arguments (weight syncs, checkpoints); the answer is rank
  0's, or the sum over ranks with ``reduce="sum"``.
* ``rank_zero``: only rank 0 runs the call (it writes files for the group).

Everything below the decorator is pure functions of Batches, tensors and lists.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from rlhf.data.batch import Batch

SPLIT, SPLIT_EXACT, ENGINES, ALL, RANK_ZERO = "split", "split_exact", "engines", "all", "rank_zero"
DISPATCH_MODES = (SPLIT, SPLIT_EXACT, ENGINES, ALL, RANK_ZERO)
REDUCTIONS = ("first", "sum")

Rows = TypeVar("Rows", Batch, list)
Gathered = TypeVar("Gathered", Batch, torch.Tensor, list)


@dataclass(frozen=True)
class Dispatch:
    """How one method spreads over a group (see the module docstring); plain data, so a worker
    can send its roles' table to the controller."""

    mode: str
    weight: str | None = None
    """split_exact: the role's method `weight(shard) -> float` giving each rank's share."""
    reduce: str = "first"
    """all: 'first' (rank 0's answer) or 'sum' (numbers added over the ranks)."""

    def __post_init__(self) -> None:
        if self.mode not in DISPATCH_MODES:
            raise ValueError(f"unknown dispatch mode {self.mode!r}; valid: {', '.join(DISPATCH_MODES)}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"unknown reduction {self.reduce!r}; valid: {', '.join(REDUCTIONS)}")
        if (self.weight is not None) != (self.mode == SPLIT_EXACT):
            raise ValueError("a weight method goes with split_exact, and split_exact needs one")


def dispatch(mode: str, *, weight: str | None = None, reduce: str = "first") -> Callable[[Callable], Callable]:
    """Declare how the decorated role method is dispatched over a worker group."""
    spec = Dispatch(mode, weight, reduce)

    def mark(method: Callable) -> Callable:
        method.__dispatch__ = spec
        return method

    return mark


def dispatch_table(cls: type) -> dict[str, Dispatch]:
    """Every method of `cls` that declares a dispatch, by name."""
    return {name: member.__dispatch__ for name, member in inspect.getmembers(cls) if hasattr(member, "__dispatch__")}


def shard_rows(rows: Rows, world_size: int, *, allow_padding: bool = True) -> tuple[list[Rows], int]:
    """Cut `rows` (a Batch or a list) into `world_size` contiguous shards of equal size.

    Args:
        rows: B rows.
        world_size: W ranks.
        allow_padding: repeat the last row until W divides the rows; when False, a B that W does
            not divide is an error (training batches must not count a row twice).
    Returns:
        (W shards of ceil(B / W) rows each, the number of padding rows added at the end).
    """
    count = len(rows)
    if count == 0:
        raise ValueError("cannot dispatch an empty batch")
    per_rank = math.ceil(count / world_size)
    padding = per_rank * world_size - count
    if padding and not allow_padding:
        raise ValueError(f"a batch of {count} rows does not split evenly over {world_size} data-parallel ranks")
    index = list(range(count)) + [count - 1] * padding
    pick = rows.select if isinstance(rows, Batch) else (lambda positions: [rows[i] for i in positions])
    return [pick(index[rank * per_rank : (rank + 1) * per_rank]) for rank in range(world_size)], padding



def gather_shards(parts: Sequence[Gathered], padding: int) -> Gathered:
    """The ranks' results in rank order as one Batch, tensor (along dim 0) or list, without the
    last `padding` rows that :func:`shard_rows` added."""
    if isinstance(parts[0], Batch):
        whole = Batch.concat(parts)
    elif isinstance(parts[0], torch.Tensor):
        whole = _cat_rows(list(parts))
    else:
        whole = [row for part in parts for row in part]
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


def shard_for_engines(rows: Rows, world_size: int, ranks_per_engine: int) -> tuple[list[Rows], int]:
    """One shard per engine, repeated for every rank of that engine.

    With tensor parallelism t, ranks t·k .. t·k + t − 1 run engine k together and must all get
    its shard; the W / t engines split the batch as :func:`shard_rows` does.

    Returns:
        (W per-rank shards, the number of padding rows added at the end).
    """
    shards, padding = shard_rows(rows, world_size // ranks_per_engine)
    return [shards[rank // ranks_per_engine] for rank in range(world_size)], padding


def gather_engines(per_rank: Sequence[Gathered], ranks_per_engine: int, padding: int) -> Gathered:
    """The engines' results (the ranks of one engine return the same: keep the first's)."""
    return gather_shards(list(per_rank[::ranks_per_engine]), padding)


def mean_metrics(per_rank: Sequence[dict[str, float]], weights: Sequence[float] | None = None) -> dict[str, float]:
    """Every metric averaged over ranks, weighted by `weights` (so a token-mean loss of the
    whole batch comes out as one process computes it); equal weights when none is given or
    when no rank had anything to weigh."""
    weights = list(weights) if weights is not None else [1.0] * len(per_rank)
    if sum(weights) == 0:
        weights = [1.0] * len(per_rank)
    total = sum(weights)
    return {key: sum(w * metrics[key] for w, metrics in zip(weights, per_rank)) / total for key in per_rank[0]}


def reduce_all(per_rank: Sequence[Any], reduce: str) -> Any:
    """The answer of an ``all`` call: rank 0's, or the sum over ranks."""
    return sum(per_rank) if reduce == "sum" else per_rank[0]
