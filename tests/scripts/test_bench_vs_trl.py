"""scripts/bench_vs_trl.py: the pure parts by hand, and a smoke run of all three arms.

The smoke run checks that every arm steps and reports positive numbers; it asserts nothing
about speed (benchmarks report numbers, tests never time them).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rlhf_harness.bench.arm_floor import group_advantages
from rlhf_harness.bench.common import build_initial_model, mask_after_eos
from rlhf_harness.bench.memory import PhasePeaks
from rlhf_harness.bench.throughput import arm_ratios, summarise_arm

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_vs_trl.py"


def run_script(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, env=env, timeout=timeout)


def test_group_advantages_by_hand():
    # group 1: rewards 1, 0 -> mean 0.5, unbiased std 0.7071; group 2: all equal -> 0
    advantages = group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), group_size=2)
    assert torch.allclose(advantages, torch.tensor([0.70711, -0.70711, 0.0, 0.0]), atol=1e-4)


def test_mask_after_eos_keeps_the_first_eos():
    ids = torch.tensor([[5, 1, 7, 1], [5, 6, 7, 8]])
    assert mask_after_eos(ids, eos_token_id=1).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_summary_medians_and_ratios():
    def record(seconds: float, tokens: int) -> dict:
        return {"seconds": seconds, "tokens": tokens, "generate_seconds": seconds / 2, "reward_mean": 0.0, "response_length_mean": 4.0, "phases": {}}

    rlhf = summarise_arm([record(1.0, 100), record(3.0, 100), record(2.0, 100)])
    floor = summarise_arm([record(1.0, 100)])
    assert rlhf["seconds_per_step"] == 2.0 and rlhf["tokens_per_second"] == 50.0 and rlhf["generate_share"] == 0.5
    ratios = arm_ratios({"rlhf": rlhf, "floor": floor})
    assert ratios["rlhf_over_floor_step_time"] == 2.0 and "rlhf_over_trl_throughput" not in ratios


@pytest.mark.slow
def test_smoke_all_arms(tmp_path):
    out = tmp_path / "bench.json"
    done = run_script(
        "--config", "tiny", "--warmup", "1", "--rounds", "1", "--steps-per-round", "1",
        "--prompts", "4", "--samples", "2", "--max-new-tokens", "8", "--threads", "1", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["arms"]) == {"rlhf", "trl", "floor"}
    for name, arm in result["arms"].items():
        assert arm["seconds_per_step"] > 0 and arm["tokens_per_second"] > 0, name
        # 4 prompts x 2 samples, 6 prompt tokens each, 1 to 8 response tokens
        assert 8 * 7 <= arm["tokens_per_step"] <= 8 * 14, (name, arm["tokens_per_step"])
        assert arm["generate_seconds"] > 0, name
        peaks = arm["peak_memory_mib"]
        assert {"step", "generate", "update"} <= set(peaks) and all(value > 0 for value in peaks.values()), (name, peaks)
        assert all(record["peak_memory_mib"]["step"] >= record["peak_memory_mib"]["update"] for record in arm["steps"]), name
        assert result["workers"][name]["memory_kind"] == "rss", name
    assert {"reward", "weight_sync"} <= set(result["arms"]["rlhf"]["peak_memory_mib"])
    assert {"rlhf_over_trl_throughput", "rlhf_over_floor_step_time"} <= set(result["ratios"])
    assert "rlhf/TRL" in done.stdout and "throughput" in done.stdout and "peak memory per phase" in done.stdout


def test_phase_peaks_see_a_tensor_that_lived_only_inside_the_phase():
    peaks = PhasePeaks("cpu")
    try:
        with peaks.phase("outer"):
            with peaks.phase("small"):
                pass
            with peaks.phase("big"):
                block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, then freed
                del block
        measured = peaks.pop()
    finally:
        peaks.stop()
    assert set(measured) == {"outer", "small", "big"}
    assert measured["big"] >= measured["small"] + 48  # the allocator may reuse a little it held
    assert measured["outer"] >= measured["big"]  # nested: the outer phase saw the inner peak
    assert peaks.pop() == {}


@pytest.mark.slow
def test_accuracy_mode_at_a_tiny_cap(tmp_path):
    # a random tiny model stands in for the SFT warm start (training one takes minutes)
    build_initial_model(tmp_path / "warm" / "sft_model", "tiny", seed=0)
    out = tmp_path / "accuracy.json"
    done = run_script(
        "--mode", "accuracy", "--warm-start", str(tmp_path / "warm"), "--max-steps", "2", "--eval-every", "1",
        "--eval-size", "8", "--target-accuracy", "1.0", "--threads", "1", "--out", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    for name in ("rlhf", "trl"):
        arm = result["arms"][name]
        assert arm["steps"] == 2 and len(arm["curve"]) == 3 and arm["train_seconds"] > 0, name


def test_accuracy_mode_refuses_the_floor():
    done = run_script("--mode", "accuracy", "--arms", "rlhf,floor", timeout=60)
    assert done.returncode == 2 and "valid arms in accuracy mode: rlhf, trl" in done.stderr
