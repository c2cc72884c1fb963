"""Worker groups for real on a local Ray cluster: through the one generic proxy, a 2-rank ZeRO-3
update equals the single-process one, and a hung or killed worker becomes an error naming its
rank (a stopped rank is told apart from the ranks waiting for it, and the group stops fast)."""

import os
import re
import signal
import time

import pytest
import torch

from rlhf.config.distributed_schema import PoolConfig
from rlhf.config.loader import load_recipe
from rlhf.data.batch import Batch
from rlhf.data.prompts import prompt_batch
from rlhf.distributed.errors import WorkerGroupError
from rlhf.distributed.group import WorkerGroup
from rlhf.distributed.proxy import RoleProxy
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.workers.build import build_actor

pytestmark = pytest.mark.slow

ROWS = 8


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=3))


def recipe(model_dir: str, *overrides: str):
    return load_recipe(None, [
        f"model.path={model_dir}", "data.train_batch_size=2", "rollout.n=4", "rollout.max_new_tokens=6",
        "actor.mini_batch_size=8", "actor.micro_batch_size=2", "actor.lr=1e-3", "actor.grad_clip=100",
        "algorithm.kl.coef=0", "trainer.total_steps=1", *overrides,
    ])


def fixed_generations(tokenizer) -> Batch:
    """8 prompts with responses of 1 to 6 tokens: the two ranks' shards hold 10 and 26 valid
    tokens, so token-mean weighting across ranks matters."""
    generator = torch.Generator().manual_seed(0)
    batch = prompt_batch([{"prompt": f"{i}+{i + 1}=", "ground_truth": str(2 * i + 1)} for i in range(ROWS)], tokenizer, max_prompt_tokens=8)
    lengths = torch.tensor([1, 2, 3, 4, 6, 6, 6, 6])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    ids = torch.randint(4, len(tokenizer), (ROWS, 6), generator=generator) * mask
    return batch.set("response_ids", ids).set("response_mask", mask).set("advantages", torch.randn(ROWS, 6, generator=generator) * mask)


def start_group(config, model_dir: str, workers: int, tmp_path) -> tuple[WorkerGroup, RoleProxy, RoleProxy]:
    """The group, and proxies of its actor and of its colocated-roles object."""
    group = WorkerGroup("default", PoolConfig(devices_per_node=workers), ["actor"], config.distributed, use_gpu=False, output_dir=str(tmp_path))
    try:
        tables = group.start(config, model_dir, {})[0]["dispatch"]
    except BaseException:
        group.shutdown()
        raise
    return group, RoleProxy(group, "actor", tables["actor"]), RoleProxy(group, "process", tables["process"])


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean"])
def test_a_two_rank_zero3_update_equals_the_single_process_update(ray_cluster, tiny_dir, tmp_path, loss_agg):
    tokenizer = load_tokenizer(tiny_dir)
    batch = fixed_generations(tokenizer)
    # the single-process torch engine
    local_config = recipe(tiny_dir, f"actor.loss_agg={loss_agg}")
    model = load_causal_lm(tiny_dir, torch.device("cpu"))
    actor = build_actor(local_config, model)
    expected = actor.update_policy(batch)
    expected_weights = dict(actor.named_weights())
    # two Ray workers, DeepSpeed ZeRO-3, each training on half the batch
    config = recipe(tiny_dir, f"actor.loss_agg={loss_agg}", "distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed", "train.zero_stage=3")
    group, remote_actor, process = start_group(config, tiny_dir, 2, tmp_path)
    try:
        got = remote_actor.update_policy(batch, None)
        weights = process.actor_weights()
    finally:
        group.shutdown()
    for key in ("actor/pg_loss", "actor/grad_norm", "actor/entropy"):
        assert got[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-7), key
    # the weights: Adam's first step is lr * g / (|g| + eps), which magnifies float rounding
    # of gradients near eps, so compare the whole update, and every weight within lr / 10
    assert weights.keys() == expected_weights.keys()
    initial = load_causal_lm(tiny_dir, torch.device("cpu")).state_dict()
    update = torch.cat([(expected_weights[name] - initial[name]).flatten() for name in weights])
    difference = torch.cat([(weights[name] - expected_weights[name]).flatten() for name in weights])
    assert update.norm() > 0.1
    assert difference.norm() / update.norm() < 1e-3
    assert difference.abs().max() < 1e-4


def test_a_hung_worker_times_out_and_a_killed_worker_is_named(ray_cluster, tiny_dir, tmp_path):
    config = recipe(tiny_dir, "distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed", "train.zero_stage=2", "distributed.timeout_s=4")
    group, remote_actor, _ = start_group(config, tiny_dir, 2, tmp_path)
    batch = fixed_generations(load_tokenizer(tiny_dir))
    try:
        assert remote_actor.compute_logprobs(batch).shape == (ROWS, 6)
        rank1 = group.pids[1]
        # a hang (the process stopped): an error naming the rank after distributed.timeout_s
        os.kill(rank1, signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(WorkerGroupError, match=rf"rank 1 did not answer \(rank 1: process {rank1} stopped\).*within 4 s \(distributed.timeout_s\)") as raised:
            remote_actor.compute_logprobs(batch)
        assert "rank 0" not in str(raised.value).split("no answer")[0]  # rank 0 finished: ZeRO-2 forwards are local
        assert time.monotonic() - start < 30
        # a death: the rank, the cause and the last checkpoint, at once
        os.kill(rank1, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(WorkerGroupError, match=r"worker group 'default' \(actor, 2 ranks\): rank 1 died in actor.compute_logprobs\(\): .*Last checkpoint: none saved in this run yet"):
            remote_actor.compute_logprobs(batch)
        assert time.monotonic() - start < 30
    finally:
        group.shutdown()


def test_a_stopped_rank_is_named_apart_from_the_ranks_waiting_for_it_and_the_group_stops_fast(ray_cluster, tiny_dir, tmp_path):
    """An update reduces gradients over both ranks, so when rank 1 stops, rank 0 waits for it
    inside a collective. The error names rank 1 as silent and rank 0 as waiting (the workers'
    collectives time out after the controller's deadline, so rank 0 does not raise first), and
    shutting the broken group down takes seconds, not a graceful close's time-out."""
    config = recipe(tiny_dir, "distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed", "train.zero_stage=2", "distributed.timeout_s=4")
    group, remote_actor, _ = start_group(config, tiny_dir, 2, tmp_path)
    batch = fixed_generations(load_tokenizer(tiny_dir))
    try:
        assert remote_actor.compute_logprobs(batch).shape == (ROWS, 6)
        os.kill(group.pids[1], signal.SIGSTOP)
        start = time.monotonic()
        with pytest.raises(WorkerGroupError) as raised:
            remote_actor.update_policy(batch, None)
        message = str(raised.value)
        assert f"rank 1 did not answer (rank 1: process {group.pids[1]} stopped)" in message
        assert "rank 0 still in actor.update_policy(), most likely waiting for the silent rank(s)" in message
        assert re.search(r"\(rank 0 (waiting|busy)\)", message), message
        assert time.monotonic() - start < 4 + 15
    finally:
        stop = time.monotonic()
        group.shutdown()
        shutdown_s = time.monotonic() - stop
    assert shutdown_s < 5
