"""The reward model as a role: on Ray, ORM and PRM sources score through a `reward_model`
worker group (rows split over its ranks), never in the driver; their scores equal the
in-process model's, and a run trains with its reward model on a pool of its own."""

import json
from pathlib import Path

import pytest
import torch

from rlhf.cli.main import main
from rlhf.config.distributed_schema import DistributedConfig, PoolConfig
from rlhf.config.loader import load_recipe
from rlhf.distributed.group import WorkerGroup
from rlhf.distributed.proxy import RoleProxy
from rlhf.distributed.ray_backend import GroupScorer
from rlhf.models.tiny import build_tiny_model
from rlhf.models.tiny_reward import build_tiny_reward_model
from rlhf.rewards.registry import build_reward_source
from tiny_helpers import response_batch

pytestmark = pytest.mark.slow

PROMPTS = ["12+30=", "7+5=", "100+1="]
RESPONSES = ["40+2\n\n=42", "12\n\nor\n\n13", "101"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm_role")
    return {
        "policy": str(build_tiny_model(root / "policy", seed=1)),
        "classifier": str(build_tiny_reward_model(root / "classifier", "classifier", seed=2)),
        "two_class": str(build_tiny_reward_model(root / "two_class", "two_class", seed=3)),
    }


def test_orm_and_prm_scores_from_a_two_rank_group_equal_the_in_process_model(ray_cluster, paths, tmp_path):
    local = {
        "orm": build_reward_source("orm", {"path": paths["classifier"], "batch_size": 2}),
        "prm": build_reward_source("prm", {"path": paths["two_class"], "separator": "#", "batch_size": 2}),
    }
    remote = {
        "orm": build_reward_source("orm", {"path": paths["classifier"], "batch_size": 2, "load_model": False}),
        "prm": build_reward_source("prm", {"path": paths["two_class"], "separator": "#", "batch_size": 2, "load_model": False}),
    }
    assert remote["orm"].scorer is None and remote["prm"].scorer is None  # nothing loaded in the driver
    dist = DistributedConfig(backend="ray", timeout_s=120)
    group = WorkerGroup("rm", PoolConfig(devices_per_node=2), ["reward_model"], dist, use_gpu=False, output_dir=str(tmp_path))
    try:
        config = load_recipe(None, [f"model.path={paths['policy']}", "distributed.backend=ray"])
        specs = {name: source.spec for name, source in remote.items()}
        reports = group.start(config, paths["policy"], specs)
        assert len({report["pid"] for report in reports}) == 2
        proxy = RoleProxy(group, "reward_model", reports[0]["dispatch"]["reward_model"])
        for name, source in remote.items():
            source.attach(GroupScorer(proxy, name))
        batch = response_batch(PROMPTS, RESPONSES)  # 3 rows over 2 ranks: one padded row, dropped again
        orm_local, orm_remote = local["orm"].score(batch), remote["orm"].score(batch)
        torch.testing.assert_close(orm_remote.scores, orm_local.scores, atol=1e-6, rtol=1e-6)
        prm_local, prm_remote = local["prm"].score(batch), remote["prm"].score(batch)
        for got, want in zip(prm_remote.step_scores, prm_local.step_scores):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        assert [len(s) for s in prm_remote.step_scores] == [2, 3, 1]
    finally:
        group.shutdown()


def test_a_run_trains_with_its_reward_model_on_a_pool_of_its_own(ray_cluster, paths, tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "ground_truth": str(a + b)}) + "\n" for a in range(4) for b in range(4)))
    out = tmp_path / "run"
    overrides = [
        f"model.path={paths['policy']}", f"data.train.path={data}", "data.eval.path=''", "data.train_batch_size=2", "rollout.n=2",
        "rollout.max_new_tokens=4", "data.max_prompt_tokens=8", "actor.mini_batch_size=4", "actor.micro_batch_size=4",
        "reward.sources=[{type: arithmetic}, {type: orm, weight: 0.5, kwargs: {path: " + paths["classifier"] + ", batch_size: 2}}]",
        "distributed.backend=ray", "distributed.timeout_s=300", "resources.pools.rm={devices_per_node: 1}", "resources.reward_model=rm",
        "trainer.total_steps=2", "trainer.save_every=1", "sft.enabled=false", "sync.check_every=0", f"trainer.output_dir={out}",
    ]
    assert main(["train", "quickstart", "model.source=pretrained", *overrides]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2]
    assert all("reward/orm/mean" in r for r in records[1:])
    # every rank of both pools wrote its part of the checkpoint
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    assert {p.name for p in latest.glob("process_*.pt")} == {"process_default_rank0.pt", "process_rm_rank0.pt"}
