"""Grouping named tensors into size-bounded buckets: the unit of a weight sync (ZeRO-3 gathers
one bucket at a time; the broadcast to a rollout pool sends one flat buffer per bucket)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch

Named = tuple[str, torch.Tensor]


def tensor_bytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


def buckets(named: Iterable[Named], max_bytes: int, *, nbytes: Callable[[torch.Tensor], int] = tensor_bytes, same_dtype: bool = False) -> Iterator[list[Named]]:
    """Consecutive groups of (name, tensor) whose `nbytes` add up to at most `max_bytes` (a
    tensor larger than that forms a group alone), in order; with `same_dtype`, a change of
    dtype also starts a new group (so a group flattens into one buffer)."""
    bucket: list[Named] = []
    size = 0
    for name, tensor in named:
        size_of = nbytes(tensor)
        if bucket and (size + size_of > max_bytes or (same_dtype and tensor.dtype != bucket[0][1].dtype)):
            yield bucket
            bucket, size = [], 0
        bucket.append((name, tensor))
        size += size_of
    if bucket:
        yield bucket
