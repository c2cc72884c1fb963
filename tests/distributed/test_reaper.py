"""A run killed outright leaves no Ray process behind: the watchdog it starts with its local
cluster (`rlhf.distributed.reaper`) removes the cluster's processes, Ray's agents included
(killed with the run alone, they outlive the raylet)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[2]


def session_members(session: int) -> list[int]:
    """Live (not zombie) processes of session `session`."""
    members = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = (Path("/proc") / name / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(name))
    return members


@pytest.mark.slow
def test_a_run_killed_alone_leaves_no_process_of_its_cluster(tmp_path: Path):
    command = [sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}",
               "distributed.backend=ray", "distributed.address=local", "sft.enabled=false", "data.eval.size=8", "trainer.eval_every=0",
               "trainer.total_steps=500", "trainer.log_every=1", "trainer.num_threads=1"]
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        lines = []
        for line in run.stdout:
            lines.append(line)
            if line.startswith("step 2 |"):
                break
        members = session_members(run.pid)
        assert len(members) >= 5, "".join(lines)  # the run, GCS, raylet, agents, workers
        run.send_signal(signal.SIGKILL)  # the run alone, not its session
        run.wait(timeout=10)
        deadline = time.monotonic() + 30
        while session_members(run.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = {pid: (Path("/proc") / str(pid) / "cmdline").read_bytes()[:80] for pid in session_members(run.pid)}
        assert left == {}
    finally:
        run.kill()
        run.stdout.close()
        for pid in session_members(run.pid):  # never leave them to the next test
            os.kill(pid, signal.SIGKILL)
