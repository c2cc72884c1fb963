"""Weights from the trainer to a rollout pool of its own: trainer rank 0 broadcasts buckets.

When the rollout engines run on other devices than the actor (`resources.rollout` names
another pool), no process holds both. A separate process group joins trainer rank 0 (rank 0
here) with every rollout worker (ranks 1..R): it is built directly on a TCP store, so neither
side's own default group is touched. For each sync, rank 0 groups the actor's full weights
(gathered under ZeRO-3 by all trainer ranks, bucket by bucket) into flat buffers of at most
`sync.bucket_mb`, publishes each bucket's layout (names, shapes, dtypes) in the store and
broadcasts the buffer; each rollout worker rebuilds the tensors and loads them. An empty
layout ends the sync. The group's timeout bounds every broadcast. Layouts travel as JSON
(names, shapes, dtype names), never as pickles: what the store hands over is read as data.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator

import torch

from rlhf.engines.buckets import buckets

Layout = list[tuple[str, tuple[int, ...], torch.dtype]]


def flatten(bucket: list[tuple[str, torch.Tensor]]) -> tuple[Layout, torch.Tensor]:
    """(the layout, one flat buffer [N] holding every tensor of `bucket` in order)."""
    layout = [(name, tuple(tensor.shape), tensor.dtype) for name, tensor in bucket]
    return layout, torch.cat([tensor.reshape(-1) for _, tensor in bucket])


def encode_layout(layout: Layout) -> str:
    return json.dumps([[name, list(shape), str(dtype).removeprefix("torch.")] for name, shape, dtype in layout])


def decode_layout(text: str | bytes) -> Layout:
    """The inverse of :func:`encode_layout`; a dtype name that is not a torch dtype is refused."""
    layout = []
    for name, shape, dtype_name in json.loads(text):
        dtype = getattr(torch, dtype_name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"weight channel: {dtype_name!r} is not a torch dtype (tensor {name!r})")
        layout.append((str(name), tuple(int(size) for size in shape), dtype))
    return layout


def unflatten(layout: Layout, buffer: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """The inverse of :func:`flatten`: views of `buffer` with the layout's names and shapes."""
    out, offset = [], 0
    for name, shape, _ in layout:
        numel = int(torch.Size(shape).numel())
        out.append((name, buffer[offset : offset + numel].view(shape)))
        offset += numel
    return out


class WeightChannel:
    """One end of the broadcast group: rank 0 sends, ranks 1..size-1 receive."""

    def __init__(self, host: str, port: int, rank: int, size: int, timeout_s: float):
        timeout = datetime.timedelta(seconds=timeout_s)
        self.store = torch.distributed.TCPStore(host, port, size, is_master=rank == 0, timeout=timeout)
        self.rank, self.size, self.syncs = rank, size, 0
        self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        if self.device.type == "cuda":
            self.group = torch.distributed.ProcessGroupNCCL(self.store, rank, size)
        else:
            self.group = torch.distributed.ProcessGroupGloo(self.store, rank, size, timeout)

    def send(self, named_tensors: Iterable[tuple[str, torch.Tensor]], max_bytes: int) -> int:
        """Rank 0: broadcast every tensor in buckets; returns the bytes sent once."""
        self.syncs += 1
        sent, count = 0, 0
        for bucket in buckets(named_tensors, max_bytes, same_dtype=True):
            layout, buffer = flatten(bucket)
            self.store.set(self._key(count), encode_layout(layout))
            self._broadcast(buffer.to(self.device))
            sent += buffer.numel() * buffer.element_size()
            count += 1
        self.store.set(self._key(count), encode_layout([]))  # the empty layout ends the sync
        return sent

    def receive(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Ranks 1..: the broadcast tensors of one sync, bucket by bucket (each bucket's
        tensors are views of a fresh buffer, so a consumer may keep them)."""
        self.syncs += 1
        index = 0
        while True:
            layout = decode_layout(self.store.get(self._key(index)))
            if not layout:
                return
            numel = sum(int(torch.Size(shape).numel()) for _, shape, _ in layout)
            buffer = torch.empty(numel, dtype=layout[0][2], device=self.device)
            self._broadcast(buffer)
            yield from unflatten(layout, buffer)
            index += 1

    def _broadcast(self, buffer: torch.Tensor) -> None:
        options = torch.distributed.BroadcastOptions()
        options.rootRank = 0
        self.group.broadcast([buffer], options).wait()

    def _key(self, index: int) -> str:
        return f"sync{self.syncs}/bucket{index}"
