"""A run killed outright leaves no Ray process behind: the watchdog it starts with its local
cluster (`rlhf.distributed.reaper`) removes the cluster's processes, Ray's agents included
(killed with the run alone, they outlive the raylet)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import session_members

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]


def raylet_started(session: int) -> bool:
    return any(b"raylet" in (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0] for pid in session_members(session))


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start-up", "step 2"])
def test_a_run_killed_alone_leaves_no_process_of_its_cluster(tmp_path: Path, moment: str):
    """Killed while Ray is starting (its raylet is up, `ray.init` has not returned), or while it trains."""
    command = [sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}",
               "distributed.backend=ray", "distributed.address=local", "sft.enabled=false", "data.eval.size=8", "trainer.eval_every=0",
               "trainer.total_steps=500", "trainer.log_every=1", "trainer.num_threads=1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL if moment == "start-up" else subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env, start_new_session=True)
    try:
        if moment == "start-up":
            deadline = time.monotonic() + 60
            while not raylet_started(run.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert raylet_started(run.pid)
        else:
            for line in run.stdout:
                if line.startswith("step 2 |"):
                    break
            assert len(session_members(run.pid)) >= 5  # the run, GCS, raylet, agents, workers
        run.send_signal(signal.SIGKILL)  # the run alone, not its session
        run.wait(timeout=10)
        deadline = time.monotonic() + 30
        while session_members(run.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {pid: (Path("/proc") / str(pid) / "cmdline").read_bytes()[:80] for pid in session_members(run.pid)}
        assert left == {}
    finally:
        run.kill()
        if run.stdout:
            run.stdout.close()
        for pid in session_members(run.pid):  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_address_local_starts_a_cluster_of_its_own_beside_a_running_one(tmp_path: Path):
    """`distributed.address: local` never joins another cluster running on the machine (a plain
    `ray.init()` would join one that `ray start` began: it reads /tmp/ray/ray_current_cluster)."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    current = Path("/tmp/ray/ray_current_cluster")  # `ray start` records its address here; a plain ray.init() reads it
    before = current.read_text() if current.exists() else None
    other = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        for line in other.stdout:
            if "Ray runtime started" in line:
                break
        run = subprocess.run([sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}",
                              "distributed.backend=ray", "distributed.address=local", "sft.enabled=false", "data.eval.size=8",
                              "trainer.total_steps=2", "trainer.num_threads=1"], capture_output=True, text=True, env=env, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Connecting to existing Ray cluster" not in run.stdout + run.stderr
        assert other.poll() is None  # the other cluster is untouched
    finally:
        os.killpg(other.pid, signal.SIGKILL)
        other.stdout.close()
        other.wait()
        for pid in session_members(other.pid):
            os.kill(pid, signal.SIGKILL)
        if before is None:  # a dead address left there would send the next plain ray.init() to it
            current.unlink(missing_ok=True)
        else:
            current.write_text(before)
