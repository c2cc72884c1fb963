"""A run killed outright leaves no Ray process behind: the watchdog it starts with its local
cluster (`rlhf.distributed.reaper`) removes the cluster's processes, the agents and workers
that Ray itself would leave included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.distributed.reaper import cluster_processes

pytest.importorskip("ray")

DRIVER = """
import os, sys, time
import ray
from rlhf.config.distributed_schema import DistributedConfig
from rlhf.distributed.ray_backend import start_ray

start_ray(DistributedConfig(backend="ray", address="local"))

@ray.remote(num_cpus=1)
class Worker:
    def pid(self):
        return os.getpid()

worker = Worker.remote()
print(ray._private.worker._global_node.get_session_dir_path(), ray.get(worker.pid.remote()), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_killed_run_leaves_no_process_of_its_cluster(tmp_path: Path):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        session_dir, worker = driver.stdout.readline().split()
        before = cluster_processes(session_dir)
        assert int(worker) in before and len(before) >= 4, before  # GCS, raylet, agents, the actor's worker
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 30
        while cluster_processes(session_dir) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cluster_processes(session_dir) == []
    finally:
        driver.kill()
        for pid in cluster_processes(session_dir) if "session_dir" in locals() else []:  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)
