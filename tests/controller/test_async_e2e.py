"""`rollout.mode: async` end to end: the quickstart with a rollout process beside the trainer,
its metrics, partial rollouts, a rollout process that dies, Ctrl-C with resume, and a
multi-turn run whose episodes the rollout process plays."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_helpers import async_run_interrupted_and_resumed

import rlhf.rollout.async_source as async_source
from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

GUESS_NUMBER = str(Path(__file__).resolve().parents[2] / "recipes" / "multi_turn" / "guess_number.yaml")

SMALL = [
    "sft.max_steps=3", "sft.eval_every=2", "sft.val_size=16", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=16", "actor.micro_batch_size=8", "rollout.mode=async", "trainer.sample_every=1", "trainer.num_samples=4",
]


def trained_groups(run: Path) -> list[int]:
    """The group id of every prompt trained on, step by step (samples.jsonl holds one sample
    of each of a step's 4 groups)."""
    return [sample["group"] for sample in read_jsonl(run / "samples.jsonl")]


def signal_rollout_when_scoring(monkeypatch, signum: int, at_call: int) -> None:
    """Fault injection: the trainer sends `signum` to its rollout process when it scores its
    `at_call`-th batch."""
    real_score, calls = async_source.score, []

    def score_then_signal(reward, batch):
        calls.append(1)
        if len(calls) == at_call:
            for child in multiprocessing.active_children():
                if child.name == "rlhf-rollout":
                    os.kill(child.pid, signum)
        return real_score(reward, batch)

    monkeypatch.setattr(async_source, "score", score_then_signal)


def test_an_async_run_trains_every_group_once_within_the_staleness_bound(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "trainer.total_steps=4", *SMALL]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        assert record["async/staleness_max"] <= 1 and record["async/dropped"] == 0.0
        assert record["async/buffer_size"] <= 8  # (max_staleness + 1) * train_batch_size groups
        for key in ("time/trainer_wait_s", "time/rollout_wait_s", "async/staleness_mean", "async/staleness_hist/0", "rollout/logprob_diff"):
            assert key in record, key
    assert [r["async/policy_version"] for r in records] == [0.0, 1.0, 2.0, 3.0]
    assert trained_groups(out) == list(range(16))
    versions = [sample["policy_version"] for sample in read_jsonl(out / "samples.jsonl")]
    assert versions[:4] == [0, 0, 0, 0] and max(versions) <= 3
    assert multiprocessing.active_children() == []  # the rollout process is gone


@pytest.mark.slow
@pytest.mark.parametrize("engine", [[], ["rollout.engine=vllm", "rollout.vllm.kv_cache_gb=0.25"]], ids=["hf", "vllm"])
def test_partial_rollouts_take_new_weights_mid_generation(tmp_path, engine):
    """Long responses (no SFT: the random model rarely stops), one group per generate call and a
    bound of 2, so the rollout side is generating when each update's weights arrive."""
    if engine:
        pytest.importorskip("vllm")
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "trainer.total_steps=6", *SMALL, "sft.enabled=false",
                 "async_training.partial=true", "async_training.max_staleness=2", "async_training.generate_groups=1",
                 "rollout.max_new_tokens=48", *engine]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert all(r["async/staleness_max"] <= 2 for r in records)
    assert sum(r["async/mixed_version_share"] for r in records) > 0, "no generation ever took new weights mid-way"
    assert trained_groups(out) == list(range(24))


@pytest.mark.slow
def test_a_rollout_process_that_dies_stops_the_run_naming_it(tmp_path, monkeypatch, capsys):
    signal_rollout_when_scoring(monkeypatch, signal.SIGKILL, at_call=2)
    out = tmp_path / "run"
    code = main(["train", "quickstart", f"trainer.output_dir={out}", "trainer.total_steps=6", *SMALL, "async_training.buffer_size=4",
                 "trainer.save_every=1"])
    err = capsys.readouterr().err
    assert code == 1 and "the rollout process (pid" in err and "died (exit code -9)" in err, err
    assert multiprocessing.active_children() == []
    assert (out / "checkpoints" / "latest").exists()  # the checkpoints written before stay


@pytest.mark.slow
def test_ctrl_c_checkpoints_leaves_no_process_and_the_resume_loses_nothing(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={out}", "trainer.total_steps=8",
               "trainer.log_every=1", *SMALL]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    rollout_pid, lines = None, []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("step 2 |"):
                children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(process.pid)], capture_output=True, text=True).stdout.split()
                rollout_pid = int(children[0])
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole process group
        assert process.wait(timeout=120) == 130, "".join(lines)
    finally:
        process.kill()
    assert rollout_pid is not None, "".join(lines)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{rollout_pid}").exists() and "zombie" not in Path(f"/proc/{rollout_pid}/status").read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{rollout_pid}").exists() or "zombie" in Path(f"/proc/{rollout_pid}/status").read_text()
    stopped_at = read_jsonl(out / "metrics.jsonl")[-1]["step"]
    assert 2 <= stopped_at < 8
    # the same command again resumes; every group is trained exactly once, in order
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=300).returncode == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(9))
    assert [r["async/policy_version"] for r in records[1:]] == [float(v) for v in range(8)]
    assert trained_groups(out) == list(range(32))


@pytest.mark.slow
def test_a_rollout_process_that_hangs_stops_the_run_after_its_timeout(tmp_path, monkeypatch, capsys):
    """SIGSTOP freezes the rollout process (as a deadlock would): the trainer stops waiting
    after async_training.timeout_s with an error naming it, and the frozen process is killed."""
    signal_rollout_when_scoring(monkeypatch, signal.SIGSTOP, at_call=1)
    started = time.monotonic()
    code = main(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", "trainer.total_steps=6", *SMALL, "async_training.timeout_s=3",
                 "async_training.buffer_size=4"])
    err = capsys.readouterr().err
    assert code == 1 and "the rollout process (pid" in err and "delivered no group for 3 s (async_training.timeout_s)" in err, err
    assert multiprocessing.active_children() == []
    assert time.monotonic() - started < 60


@pytest.mark.slow
def test_steps_without_a_policy_update_do_not_stall_the_rollout_side(tmp_path):
    """PPO's critic warm-up trains only the critic for 2 steps: the versions still advance (with
    the same weights), so the staleness gate lets the rollout process go on."""
    out = tmp_path / "run"
    assert main(["train", "algorithms/ppo_gae", f"trainer.output_dir={out}", "trainer.total_steps=4", *SMALL, "critic.warmup_rl_steps=2",
                 "critic.mini_batch_size=16", "critic.micro_batch_size=8", "async_training.timeout_s=60"]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert [r["async/policy_version"] for r in records] == [0.0, 1.0, 2.0, 3.0]
    assert ["actor/pg_loss" in r for r in records] == [False, False, True, True]
    assert all(r["async/staleness_max"] <= 1 for r in records)


@pytest.mark.slow
def test_dapo_dynamic_sampling_streams_extra_groups(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "algorithms/dapo", f"trainer.output_dir={out}", "trainer.total_steps=4", *SMALL, "sft.enabled=false",
                 "data.dynamic_sampling.max_extra_rounds=2", "async_training.timeout_s=60"]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    for record in records:
        assert 1 <= record["dynamic_sampling/rounds"] <= 3 and record["async/staleness_max"] <= 1
    groups = trained_groups(out)
    assert len(groups) == len(set(groups)) == 16


@pytest.mark.slow
def test_remax_gets_its_greedy_baselines_from_the_rollout_process(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "algorithms/remax", f"trainer.output_dir={out}", "trainer.total_steps=3", *SMALL, "async_training.timeout_s=60"]) == 0
    for record in read_jsonl(out / "metrics.jsonl")[1:]:
        assert 0.0 <= record["remax/baseline_mean"] <= 1.0 and "time/baseline_s" in record
    assert trained_groups(out) == list(range(12))


@pytest.mark.slow
def test_a_trainer_killed_while_its_rollout_process_starts_leaves_nothing_behind(tmp_path):
    """SIGKILL of the trainer while its rollout process still starts (imports its modules,
    rebuilds the shared weights) leaves nothing behind. `kill_resume.py --async` once killed
    it in the last moments before the process asked the kernel to kill it with its parent
    (PR_SET_PDEATHSIG); it now checks its parent right after asking. This test kills at the
    first sight of the process, which does not always hit that narrow window."""
    out = tmp_path / "run"
    command = [sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={out}", "trainer.total_steps=50", *SMALL,
               "sft.enabled=false"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               start_new_session=True)
    try:
        deadline, rollout_pid = time.monotonic() + 120, None
        while rollout_pid is None and time.monotonic() < deadline:  # the moment the trainer has spawned it
            children = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(process.pid)], capture_output=True, text=True).stdout.splitlines()
            rollout_pid = next((int(line.split()[0]) for line in children if "spawn_main" in line), None)
            time.sleep(0.01)
        assert rollout_pid is not None
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and Path(f"/proc/{rollout_pid}").exists() and "zombie" not in Path(f"/proc/{rollout_pid}/status").read_text():
        time.sleep(0.1)
    assert not Path(f"/proc/{rollout_pid}").exists() or "zombie" in Path(f"/proc/{rollout_pid}/status").read_text()


@pytest.mark.slow
def test_a_multi_turn_async_run_streams_episodes_and_resumes_losing_nothing(tmp_path, monkeypatch, capsys):
    """guess_number with the rollout process playing the episodes against its own
    environments: the bound holds, the env metrics come with each batch, and a SIGTERM at step
    3 (the step finishes and checkpoints the stream) then a resume trains every group once."""
    out = tmp_path / "run"
    args = ["train", GUESS_NUMBER, f"trainer.output_dir={out}", "trainer.total_steps=5", *SMALL, "data.eval.size=8", "trainer.eval_every=5"]
    records = async_run_interrupted_and_resumed(main, args, out, 5, monkeypatch, capsys)
    for record in records[1:]:
        assert 1 <= record["env/turns_mean"] <= 5 and "env/success_rate" in record
    assert trained_groups(out) == list(range(20))
    sample = read_jsonl(out / "samples.jsonl")[-1]
    assert sample["conversation"][0]["role"] == "user" and sample["turns"] == len(sample["turn_rewards"]) >= 1
    assert multiprocessing.active_children() == []
