"""A collective whose peer never joins fails after `distributed.timeout_s` instead of hanging
(`init_distributed(timeout_s)`): two gloo ranks, rank 1 stays away from rank 0's all-reduce."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'rlhf[deepspeed]')")

from rlhf.engines.base import OptimConfig  # noqa: E402

TIMEOUT_S = 4.0


def _rank(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine

    engine = DeepSpeedEngine(torch.nn.Linear(2, 2), OptimConfig(lr=1e-3), zero_stage=1, collective_timeout_s=TIMEOUT_S)
    if rank == 1:
        time.sleep(4 * TIMEOUT_S)  # a hung peer: never joins the all-reduce
        return
    start = time.monotonic()
    try:
        engine.dp_sum(1.0)
        outcome = "returned"
    except Exception as error:  # gloo's timeout error
        outcome = f"{type(error).__name__}: {str(error)[:200]}"
    Path(out).write_text(f"{time.monotonic() - start:.2f}\n{outcome}")


@pytest.mark.slow
def test_a_collective_with_a_hung_peer_times_out(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "rank0.txt"
    torch.multiprocessing.spawn(_rank, args=(port, str(out)), nprocs=2, join=True)
    seconds, outcome = out.read_text().split("\n", 1)
    assert outcome != "returned"
    assert TIMEOUT_S * 0.5 <= float(seconds) <= TIMEOUT_S * 3, (seconds, outcome)
