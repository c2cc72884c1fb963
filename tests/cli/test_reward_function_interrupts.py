"""Stopping a run whose reward function hangs: Ctrl-C (SIGINT to the whole process group, as a
terminal sends it) stops it at once with exit status 130, SIGTERM once the hung call reaches
its timeout_s and the step ends, and neither these nor a SIGKILL of the trainer leave the
function's worker process behind. Real `rlhf train` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_helpers import descendants, wait_gone

RECIPE = """\
model: {source: tiny}
data:
  train: {path: "builtin:arithmetic"}
  max_prompt_tokens: 8
rollout: {max_new_tokens: 5}
sft: {enabled: false}
trainer: {total_steps: 2}
reward:
  sources: [{type: function, path: rewards.py, name: score, timeout_s: 600}]
"""
HANGS = """\
import os, time
from pathlib import Path

def score(prompt, response, ground_truth):
    started = Path(__file__).with_name("started")
    if started.exists():  # only the first call hangs
        return 0.0
    started.write_text(str(os.getpid()))
    while True:
        try:
            time.sleep(10)
        except:  # swallows whatever it can
            pass
"""


def start_run(tmp_path: Path, *overrides: str) -> subprocess.Popen:
    (tmp_path / "rewards.py").write_text(HANGS)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "rlhf.cli.main", "train", str(tmp_path / "recipe.yaml"),
                             f"trainer.output_dir={tmp_path / 'run'}", *overrides],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, like a job in a terminal


def wait_until_hanging(run: subprocess.Popen, tmp_path: Path) -> set[int]:
    """Wait until the reward function runs; the run's processes then (the worker among them)."""
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists():
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline, "the reward function was never called"
        time.sleep(0.1)
    time.sleep(0.3)  # well inside its loop
    family = descendants(run.pid)
    assert int((tmp_path / "started").read_text()) in family
    return family


@pytest.mark.parametrize("in_eval", [pytest.param(True, marks=pytest.mark.slow), False], ids=["during-evaluation", "during-a-step"])
def test_ctrl_c_stops_a_run_whose_reward_function_hangs(tmp_path, in_eval):
    """In the evaluation before RL one Ctrl-C stops the run; inside a step the first asks to
    stop after the step, and the second (the way to stop now) must not wait for the function."""
    run = start_run(tmp_path, *(["data.eval.path=builtin:arithmetic", "data.eval.split=test", "data.eval.size=4"] if in_eval else []))
    try:
        family = wait_until_hanging(run, tmp_path)
        started = time.monotonic()
        os.killpg(run.pid, signal.SIGINT)
        if not in_eval:
            time.sleep(0.5)
            os.killpg(run.pid, signal.SIGINT)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 130, err
        assert time.monotonic() - started < 10
        assert "interrupted" in err and "Traceback" not in err
        assert not wait_gone(family, 5.0), "a process of the run outlived it"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


@pytest.mark.slow
def test_sigterm_stops_the_run_after_the_hung_call_times_out(tmp_path):
    run = start_run(tmp_path, "reward.on_error=zero", "reward.sources.0.timeout_s=3")
    try:
        family = wait_until_hanging(run, tmp_path)
        started = time.monotonic()
        os.killpg(run.pid, signal.SIGTERM)
        _, err = run.communicate(timeout=60)
        assert run.returncode == 130, err
        assert time.monotonic() - started < 3 + 10
        assert "stopped by signal 15 after step 1" in err
        assert (tmp_path / "run" / "checkpoints" / "latest").exists()
        assert not wait_gone(family, 5.0), "a process of the run outlived it"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()


@pytest.mark.slow  # tests/usercode covers the same in a fraction of the time
def test_a_killed_run_leaves_no_worker_behind(tmp_path):
    run = start_run(tmp_path)
    try:
        family = wait_until_hanging(run, tmp_path)
        run.kill()  # the trainer only: its worker must notice by itself
        run.communicate(timeout=30)
        assert not wait_gone(family, 5.0), "the reward function's worker outlived the killed trainer"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.communicate()
