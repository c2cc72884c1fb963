"""`train.max_tokens_per_micro_batch` under ZeRO-3 data parallelism: each rank's token budget
cuts its rows into a different number of micro-batches, yet every ZeRO-3 forward is a
collective (it gathers the weights), so the ranks must agree on one count or hang. Two gloo
ranks with shards of short and of long rows must finish, and take the same step as one
process on the whole batch."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install 'rlhf[deepspeed]')")

from rlhf.data.batch import Batch  # noqa: E402
from rlhf.data.padding import micro_batch_rows  # noqa: E402
from rlhf.engines.base import OptimConfig  # noqa: E402
from rlhf.engines.torch_engine import TorchEngine  # noqa: E402
from rlhf.models.load import load_causal_lm  # noqa: E402
from rlhf.workers.actor import ActorWorker, PolicyLossConfig  # noqa: E402
from test_actor import add_rl_fields  # noqa: E402

OPTIM = OptimConfig(lr=1e-3, grad_clip=1.0)
BUDGET = 24
SHORT_ROWS, LONG_ROWS = [0, 2, 4], [1, 3, 5]  # conftest.ROWS: 1+2=, 7+45=, 5+5= against the longer ones


def loss_config(rows: int) -> PolicyLossConfig:
    return PolicyLossConfig(mini_batch_size=rows, micro_batch_size=rows, max_tokens=BUDGET, loss_agg="token-mean")


def _rank(rank: int, port: int, model_dir: str, work: str) -> None:
    """One of two ranks: ZeRO-3 actor, logprobs and one update over its shard, weights saved."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine

    engine = DeepSpeedEngine(load_causal_lm(model_dir, torch.device("cpu")), OPTIM, zero_stage=3)
    actor = ActorWorker(engine, loss_config(3), temperature=1.0, seed=0)
    shard = Batch(torch.load(Path(work) / f"shard{rank}.pt"))
    logprobs = actor.compute_logprobs(shard)
    actor.update_policy(shard)
    named = {name: tensor.clone() for name, tensor in engine.named_weights()}
    if rank == 0:
        torch.save(named, Path(work) / "weights.pt")
    torch.save(logprobs, Path(work) / f"logprobs{rank}.pt")
    torch.distributed.destroy_process_group()


def spawn_and_wait(work: Path, model_dir: str, timeout_s: float = 240.0) -> None:
    """Both ranks, killed (and the test failed) if they have not finished in `timeout_s`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = torch.multiprocessing.spawn(_rank, args=(port, model_dir, str(work)), nprocs=2, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two ZeRO-3 ranks did not finish in {timeout_s:.0f} s (a collective mismatch hangs them)")


@pytest.mark.slow  # 8 s; the fast suite keeps tests/engines/test_deepspeed_engine.py's two-rank ZeRO-3 run
def test_zero3_ranks_with_different_micro_batch_counts_agree_and_match_one_process(tiny_path, batch, tmp_path):
    model = load_causal_lm(tiny_path, torch.device("cpu"))
    batch = add_rl_fields(batch, model)
    shards = [batch.select(SHORT_ROWS), batch.select(LONG_ROWS)]
    counts = [len(micro_batch_rows(shard, 3, BUDGET)) for shard in shards]
    assert counts[0] < counts[1], counts  # without agreement the ranks would run different numbers of forwards
    for rank, shard in enumerate(shards):
        torch.save(dict(shard.tensors), tmp_path / f"shard{rank}.pt")
    spawn_and_wait(tmp_path, tiny_path)
    # one process on the whole batch: one mini-batch of 6 rows, token-mean over all of them
    reference = ActorWorker(TorchEngine(model, OPTIM), loss_config(6), temperature=1.0, seed=0)
    expected_logprobs = reference.compute_logprobs(batch)
    reference.update_policy(batch)
    for rank, rows in enumerate((SHORT_ROWS, LONG_ROWS)):
        mask = batch["response_mask"][rows].bool()
        assert torch.allclose(torch.load(tmp_path / f"logprobs{rank}.pt")[mask], expected_logprobs[rows][mask], atol=1e-5)
    weights = torch.load(tmp_path / "weights.pt")
    for name, tensor in reference.engine.named_weights():
        torch.testing.assert_close(weights[name], tensor, atol=1e-4, rtol=1e-4, msg=name)
