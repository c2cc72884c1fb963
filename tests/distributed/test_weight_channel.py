"""The broadcast group of separate rollout pools: bucketing (pure) and a real 3-process
broadcast over gloo (trainer rank 0 to two receivers), twice in a row."""

import socket

import pytest
import torch
import torch.multiprocessing as mp

from rlhf.distributed.weight_channel import (
    WeightChannel,
    decode_layout,
    encode_layout,
    flatten,
    unflatten,
)
from rlhf.engines.buckets import buckets


def named(sync: int) -> list[tuple[str, torch.Tensor]]:
    return [(f"w{i}", torch.full((i + 1, 3), float(10 * sync + i))) for i in range(5)]


def test_buckets_respect_the_byte_limit_and_keep_the_order():
    groups = list(buckets(named(0), max_bytes=40))  # tensors of 12, 24, 36, 48, 60 bytes
    assert [[name for name, _ in group] for group in groups] == [["w0", "w1"], ["w2"], ["w3"], ["w4"]]


def test_a_dtype_change_starts_a_new_bucket():
    tensors = [("a", torch.zeros(2)), ("b", torch.zeros(2, dtype=torch.bfloat16)), ("c", torch.zeros(2, dtype=torch.bfloat16))]
    assert [[name for name, _ in group] for group in buckets(tensors, 1 << 20, same_dtype=True)] == [["a"], ["b", "c"]]


def test_flatten_then_unflatten_is_the_identity():
    layout, buffer = flatten(named(1))
    assert buffer.shape == (45,)
    for (name, tensor), (got_name, got) in zip(named(1), unflatten(layout, buffer)):
        assert name == got_name and torch.equal(tensor, got)


def _end(rank: int, port: int, results) -> None:
    channel = WeightChannel("127.0.0.1", port, rank, 3, timeout_s=60)
    for sync in range(2):
        if rank == 0:
            results[f"sent{sync}"] = channel.send(iter(named(sync)), max_bytes=40)
        else:
            got = [(name, tensor.clone()) for name, tensor in channel.receive()]
            results[f"rank{rank}-{sync}"] = all(n == m and torch.equal(t, u) for (n, t), (m, u) in zip(named(sync), got)) and len(got) == 5


def spawn_ends(end, nprocs: int) -> dict:
    """Run `end(rank, port, results)` in `nprocs` processes on a free local port; their results."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(end, args=(port, results), nprocs=nprocs)
        return dict(results)


def test_rank_0_broadcasts_every_tensor_to_every_receiver():
    results = spawn_ends(_end, 3)
    assert results == {"sent0": 180, "sent1": 180, "rank1-0": True, "rank2-0": True, "rank1-1": True, "rank2-1": True}


def test_layouts_travel_as_json_data_only():
    layout = [("model.embed.weight", (10, 4), torch.bfloat16), ("lm_head.bias", (10,), torch.float32)]
    assert decode_layout(encode_layout(layout)) == layout and decode_layout(encode_layout([])) == []
    with pytest.raises(ValueError, match="'Tensor' is not a torch dtype"):
        decode_layout('[["w", [2], "Tensor"]]')


def mixed_dtypes() -> list[tuple[str, torch.Tensor]]:
    """bfloat16 weights (model.param_dtype: bfloat16) and float32 ones (a LoRA layer merged in
    float32), interleaved: values that bfloat16 rounding or an upcast on the way would change."""
    values = torch.arange(12, dtype=torch.float32) / 7
    return [("a", values[:4].to(torch.bfloat16)), ("b", values[4:8]), ("c", values[8:].to(torch.bfloat16)), ("d", values[:2].to(torch.bfloat16))]


def _mixed_end(rank: int, port: int, results) -> None:
    channel = WeightChannel("127.0.0.1", port, rank, 2, timeout_s=60)
    if rank == 0:
        results["sent"] = channel.send(iter(mixed_dtypes()), max_bytes=1 << 20)
    else:
        got = [(name, tensor.clone()) for name, tensor in channel.receive()]
        results["same"] = len(got) == 4 and all(
            n == m and t.dtype == u.dtype and torch.equal(t, u) for (n, t), (m, u) in zip(got, mixed_dtypes()))


def test_bf16_and_float32_weights_cross_gloo_bit_for_bit():
    results = spawn_ends(_mixed_end, 2)
    assert results == {"sent": 4 * 2 + 4 * 4 + 4 * 2 + 2 * 2, "same": True}
