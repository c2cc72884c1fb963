"""Ctrl-C in the middle of training: a run started as a subprocess in a session of
its own gets SIGINT on its whole process group, as a terminal sends it, once it logged step 2.
It must finish the step, checkpoint, exit with 130 (what `rlhf.cli.main` returns on
KeyboardInterrupt) and leave no process of its session, nor any descendant seen during the
run, alive 15 s later (rlhf_harness.bench.monitor checks, and kills what it finds).

Backends: the plain torch/HF run, a run with verifier worker processes, a vLLM-engine run and
(slow: Ray starts its own cluster) a Ray run with one DeepSpeed rank. Each takes 20-25 s on 2
CPU cores.
"""

import sys
from pathlib import Path

import pytest
from rlhf_harness.bench.monitor import Watch, training_env, watch_run
from rlhf_harness.tiny_recipes import tiny_overrides

NEVER_ENDS = "trainer.total_steps=100000"
"""So that the run is still training when the signal comes."""
SMALLER = ["sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=16", "actor.micro_batch_size=16"]
"""The quickstart at 4 prompts x 4 samples, for the backends whose steps cost more."""


def interrupted_run(tmp_path: Path, recipe: str, overrides: list[str], timeout_s: float = 240) -> tuple[Watch, str]:
    """Run `rlhf train recipe overrides` (output in <tmp_path>/run), Ctrl-C it after step 2."""
    command = [sys.executable, "-m", "rlhf.cli.main", "train", recipe, *overrides, NEVER_ENDS]
    log_path = tmp_path / "train.log"
    watch = watch_run(command, tmp_path / "run" / "metrics.jsonl", log_path, interval_s=0.2, interrupt_at_step=2, timeout_s=timeout_s, env=training_env())
    return watch, log_path.read_text()


def assert_clean_exit(tmp_path: Path, watch: Watch, log: str) -> None:
    assert not watch.timed_out, log[-3000:]
    assert watch.interrupted_at is not None, log[-3000:]
    assert watch.returncode == 130, log[-3000:]
    assert "stopped by signal 2 after step" in log
    assert (tmp_path / "run" / "checkpoints" / "latest").exists()
    assert watch.left_behind == [], f"left behind: {watch.left_behind}\n{log[-3000:]}"


def test_ctrl_c_stops_a_torch_run_cleanly(tmp_path: Path):
    overrides = [*tiny_overrides("quickstart", tmp_path), "sft.enabled=false", "data.eval.size=16", "trainer.num_threads=1"]
    watch, log = interrupted_run(tmp_path, "quickstart", overrides)
    assert_clean_exit(tmp_path, watch, log)


@pytest.mark.slow  # 6 s
def test_ctrl_c_stops_the_verifier_workers_too(tmp_path: Path):
    # the GSM8K recipe's tiny variant scores in a verifier pool (a forkserver and one worker)
    watch, log = interrupted_run(tmp_path, "gsm8k_grpo_qwen2.5-0.5b", [*tiny_overrides("gsm8k_grpo_qwen2.5-0.5b", tmp_path), "trainer.num_threads=1"])
    assert_clean_exit(tmp_path, watch, log)
    assert watch.children_seen >= 2, "expected the verifier's forkserver and worker among the run's processes"


@pytest.mark.slow
def test_ctrl_c_stops_a_ray_run_and_its_cluster(tmp_path: Path):
    pytest.importorskip("ray")
    pytest.importorskip("deepspeed")
    # a cluster of its own (address local), one DeepSpeed rank hosting actor and rollout
    overrides = [
        *tiny_overrides("quickstart", tmp_path), *SMALLER, "distributed.backend=ray", "distributed.address=local",
        "train.engine=deepspeed", "train.zero_stage=1", "resources.pools.default.devices_per_node=1",
    ]
    watch, log = interrupted_run(tmp_path, "quickstart", overrides, timeout_s=300)
    assert_clean_exit(tmp_path, watch, log)
    assert watch.children_seen >= 3, "expected Ray's daemons and a worker among the run's processes"


@pytest.mark.slow
def test_ctrl_c_stops_a_vllm_run_cleanly(tmp_path: Path):
    pytest.importorskip("vllm")  # about 20 s on 2 CPU cores: vLLM in-process, inductor's compile workers as children
    overrides = [*tiny_overrides("quickstart", tmp_path), *SMALLER, "rollout.engine=vllm", "rollout.logprobs=true", "rollout.vllm.kv_cache_gb=0.05"]
    watch, log = interrupted_run(tmp_path, "quickstart", overrides, timeout_s=300)
    assert_clean_exit(tmp_path, watch, log)
