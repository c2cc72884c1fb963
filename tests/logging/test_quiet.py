"""A run's console is quiet by default and shows the libraries' noise again with --verbose
(rlhf.logging.quiet): DeepSpeed's accelerator line, numpy's subnormal warnings, datasets'
progress bars, third-party FutureWarnings, vLLM's warm-up traceback and weight-load warnings.
What the user needs (dropped prompts, trust_remote_code) shows either way."""

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from rlhf.logging import quiet

TINY = ["sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=2",
        "actor.mini_batch_size=8", "actor.micro_batch_size=8", "trainer.total_steps=1"]

NOISE = {
    "deepspeed": "Setting accelerator to CPU",
    "numpy": "The value of the smallest subnormal",
    "datasets": "Generating train split",
}


def run_cli(args: list[str], verbose: bool = False) -> str:
    """stdout + stderr of `rlhf ARGS` in a fresh process (--verbose at the end of the line)."""
    env = {"RAY_AUTH_MODE": "disabled", **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    # what this test process set for itself: its own quiet settings, and the process group of an
    # earlier in-process DeepSpeed test (whose port is still taken)
    for name in (quiet.VERBOSE_ENV, "VLLM_LOGGING_LEVEL", "HF_DATASETS_DISABLE_PROGRESS_BARS",
                 "MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"):
        env.pop(name, None)
    command = [sys.executable, "-m", "rlhf.cli.main", *args, *(["--verbose"] if verbose else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    return output


def parquet_with_long_prompts(path: Path) -> Path:
    """Addition prompts in a parquet file (`datasets` loads it), two of them too long."""
    import datasets

    rows = [{"prompt": f"{a:02d}+{b:02d}=", "ground_truth": str(a + b)} for a in range(10) for b in range(10)]
    rows += [{"prompt": "1234567890+1=", "ground_truth": "1234567891"}] * 2
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


@pytest.mark.parametrize("verbose", [False, pytest.param(True, marks=pytest.mark.slow)])  # verbose: 6 s, full suite only
def test_a_tiny_run_is_quiet_unless_verbose(tmp_path: Path, verbose: bool):
    # a fresh data file each time: datasets draws its progress bar when it first reads a file
    data = parquet_with_long_prompts(tmp_path / "add.parquet")
    output = run_cli(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *TINY, f"data.train.path={data}",
                      "data.max_prompt_tokens=8", "model.trust_remote_code=true"], verbose)
    for library, line in NOISE.items():
        assert (line in output) == verbose, f"{library}: {line!r} {'missing' if verbose else 'shown'}\n{output}"
    # what the user needs shows either way
    assert "data.train: dropped 2 of 102 prompts longer than data.max_prompt_tokens=8" in output
    assert "model.trust_remote_code is on" in output
    assert "held-out accuracy: before RL" in output


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_a_deepspeed_run_is_quiet_unless_verbose(tmp_path: Path, verbose: bool):
    pytest.importorskip("deepspeed")
    output = run_cli(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *TINY,
                      "train.engine=deepspeed", "train.zero_stage=2"], verbose)
    for line in ("Setting accelerator to CPU", "The value of the smallest subnormal"):
        assert (line in output) == verbose, output
    # printed when DeepSpeed loads its CPU communication op (not on every platform)
    assert "built successfully" not in output or verbose, output


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_a_vllm_run_is_quiet_unless_verbose(tmp_path: Path, verbose: bool):
    pytest.importorskip("vllm")  # 15-20 s on 2 CPU cores
    output = run_cli(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *TINY,
                      "rollout.engine=vllm", "rollout.vllm.kv_cache_gb=0.05"], verbose)
    for line in ("Chat template warmup failed", "Traceback", "Failed to load weights", "FutureWarning",
                 "Loading safetensors checkpoint shards", "INFO"):
        assert (line in output) == verbose, f"{line!r} {'missing' if verbose else 'shown'}\n{output}"
    assert "held-out accuracy: before RL" in output


def test_third_party_deprecations_go_and_ours_stay(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.quiet_libraries()
        warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module="transformers.utils.generic")
        warnings.warn_explicit("old API", FutureWarning, "x.py", 1, module="my_reward")
        warnings.warn_explicit("The value of the smallest subnormal for float32 is zero.", UserWarning, "x.py", 1, module="numpy")
        warnings.warn_explicit("a user warning", UserWarning, "x.py", 1, module="transformers")
    assert [(w.category, str(w.message)) for w in caught] == [(FutureWarning, "old API"), (UserWarning, "a user warning")]


def test_log_filters_follow_the_verbose_switch(monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "0")
    accelerator = logging.LogRecord("DeepSpeed", logging.WARNING, "x.py", 1, "Setting accelerator to CPU. If you ...", None, None)
    other = logging.LogRecord("DeepSpeed", logging.WARNING, "x.py", 1, "something else", None, None)
    vllm_warning = logging.LogRecord("vllm.renderers.base", logging.WARNING, "x.py", 1, "warm-up", None, None)
    vllm_error = logging.LogRecord("vllm.engine", logging.ERROR, "x.py", 1, "failed", None, None)
    ours = logging.LogRecord("rlhf.models.load", logging.WARNING, "x.py", 1, "trust_remote_code is on", None, None)
    assert [quiet.DEEPSPEED_FILTER.filter(accelerator), quiet.DEEPSPEED_FILTER.filter(other)] == [False, True]
    assert [quiet.VLLM_FILTER.filter(record) for record in (vllm_warning, vllm_error, ours)] == [False, True, True]
    quiet.set_verbose()
    assert quiet.DEEPSPEED_FILTER.filter(accelerator) and quiet.VLLM_FILTER.filter(vllm_warning)


def test_held_stdout_keeps_prints_unless_the_block_fails(monkeypatch, capsys):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.held_stdout():
        print("op built successfully")
    assert capsys.readouterr().out == ""
    with pytest.raises(RuntimeError), quiet.held_stdout():
        print("compiler output")
        raise RuntimeError("the build failed")
    assert "compiler output" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_the_workers_of_a_ray_run_are_quiet_unless_verbose(tmp_path: Path, verbose: bool):
    pytest.importorskip("ray")
    pytest.importorskip("deepspeed")
    output = run_cli(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *TINY, "distributed.backend=ray",
                      "distributed.address=local", "train.engine=deepspeed", "train.zero_stage=1",
                      "resources.pools.default.devices_per_node=1"], verbose)
    worker_lines = [line for line in output.splitlines() if "(RoleWorker" in line]
    for line in ("Setting accelerator to CPU", "The value of the smallest subnormal"):
        assert any(line in worker_line for worker_line in worker_lines) == verbose, output
    assert "built successfully" not in output or verbose, output
