"""Worker groups on a 2-node Ray cluster (two raylets on this machine): `nodes` ×
`devices_per_node` places one worker on each of the distinct nodes, a pool that cannot be
packed on one node is refused naming the pool, a run directory a worker cannot see stops the
start naming the ranks, and a run named by relative paths trains with one rank per node (its
paths resolved in the driver, every rank's part in each checkpoint)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.models.tiny import build_tiny_model

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("multinode_checks.py")


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict[str, dict]:
    pytest.importorskip("ray")
    work = tmp_path_factory.mktemp("multinode")
    model = build_tiny_model(work / "model", seed=4)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(SCRIPT), str(work / "work"), str(model)], env=env, capture_output=True, text=True, timeout=900)
    found = {}
    for line in done.stdout.splitlines():
        if line.startswith('{"check"'):
            record = json.loads(line)
            found[record["check"]] = record
    assert done.returncode == 0, done.stderr[-3000:]
    return found


def test_one_worker_on_each_of_two_distinct_nodes(checks):
    spread = checks["spread"]
    assert len(set(spread["nodes"])) == 2 and set(spread["nodes"]) == set(spread["cluster"])


def test_two_workers_on_one_node_are_refused_naming_the_pool(checks):
    packed = checks["packed"]
    assert "resources.pools.packed: the Ray cluster did not grant 1 node(s)" in packed["error"]
    assert "devices_per_node=2 workers on each of nodes=1 distinct nodes" in packed["error"]
    assert packed["seconds"] < 30


def test_a_run_directory_the_workers_do_not_see_stops_the_start_naming_the_ranks(checks):
    error = checks["relative"]["error"]
    assert error.startswith("trainer.output_dir: 'relative_run' as the controller sees it is not visible to rank 0 of worker group 'spread'")
    assert "rank 1 of worker group 'spread'" in error and "filesystem all nodes share" in error


def test_a_run_by_relative_paths_trains_with_one_rank_per_node(checks):
    run = checks["run"]
    assert run["code"] == 0 and run["steps"] == 3
    assert {"process_default_rank0.pt", "process_default_rank1.pt", "actor", "loop.pt"} <= set(run["parts"])
