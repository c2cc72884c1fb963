"""Checks on a 2-node local Ray cluster (`ray.cluster_utils.Cluster`: two raylets on this
machine, one IP), run in a process of their own by test_multinode.py (a process can join only
one Ray cluster, and the session's other tests use another). Prints one JSON object per check.

Usage: python multinode_checks.py WORK_DIR MODEL_DIR
"""

import json
import os
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from rlhf.cli.main import main
from rlhf.config.distributed_schema import DistributedConfig, PoolConfig
from rlhf.distributed.errors import WorkerGroupError
from rlhf.distributed.group import WorkerGroup
from rlhf.distributed.ray_backend import check_shared_output_dir


def report(name: str, **fields) -> None:
    print(json.dumps({"check": name, **fields}), flush=True)


def placement(dist: DistributedConfig, work: Path) -> None:
    """nodes × devices_per_node: one worker on each of two nodes; two on one node cannot fit."""
    group = WorkerGroup("spread", PoolConfig(nodes=2, devices_per_node=1), ["actor"], dist, use_gpu=False, output_dir=str(work))
    try:
        nodes = [ray.get(worker.node_id.remote()) for worker in group.workers]
        check_shared_output_dir([group], work)  # an absolute path: every node sees it
        report("spread", nodes=nodes, cluster=[node["NodeID"] for node in ray.nodes() if node["Alive"]])
        # the controller moves elsewhere: a relative path now names another directory for it
        os.chdir(work / "elsewhere")
        try:
            check_shared_output_dir([group], "relative_run")
            report("relative", error=None)
        except WorkerGroupError as error:
            report("relative", error=str(error))
        finally:
            os.chdir(work)
    finally:
        group.shutdown()
    start = time.monotonic()
    try:
        WorkerGroup("packed", PoolConfig(nodes=1, devices_per_node=2), ["actor"], dist, use_gpu=False, output_dir=str(work)).shutdown()
        report("packed", error=None)
    except WorkerGroupError as error:
        report("packed", error=str(error), seconds=time.monotonic() - start)


def training_run(work: Path, model_dir: str) -> None:
    """A 2-rank DeepSpeed run with one rank per node, named by relative paths from a working
    directory the workers do not share."""
    os.chdir(work / "elsewhere")
    (Path("data")).mkdir(exist_ok=True)
    Path("data/sums.jsonl").write_text("".join(json.dumps({"prompt": f"{a}+{b}=", "ground_truth": str(a + b)}) + "\n" for a in range(5) for b in range(5)))
    os.symlink(model_dir, "policy")
    code = main([
        "train", "quickstart", "model.source=pretrained", "model.path=policy", "data.train.path=data/sums.jsonl", "data.eval.path=''",
        "data.train_batch_size=2", "rollout.n=2", "rollout.max_new_tokens=4", "data.max_prompt_tokens=8",
        "actor.mini_batch_size=4", "actor.micro_batch_size=2", "sft.enabled=false", "sync.check_every=1",
        "distributed.backend=ray", "distributed.timeout_s=300", "train.engine=deepspeed", "train.zero_stage=2",
        "resources.pools.default={nodes: 2, devices_per_node: 1}", "trainer.total_steps=2", "trainer.save_every=1",
        "trainer.output_dir=runs/relative",
    ])
    run = work / "elsewhere" / "runs" / "relative"
    latest = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    report("run", code=code, parts=sorted(p.name for p in latest.iterdir()), steps=len((run / "metrics.jsonl").read_text().splitlines()))


if __name__ == "__main__":
    work, model_dir = Path(sys.argv[1]).resolve(), sys.argv[2]
    (work / "elsewhere").mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        placement(DistributedConfig(backend="ray", timeout_s=120, placement_timeout_s=3), work)
        training_run(work, model_dir)
    finally:
        ray.shutdown()
        cluster.shutdown()
