"""scripts/bench_gpu.py: the MFU arithmetic by hand, the benchmark's shapes, the floor's
micro-batching, the skipped vLLM arm, and a CPU smoke run of the tiny shape.

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
from rlhf_harness.bench.arm_floor import FloorArm
from rlhf_harness.bench.common import build_initial_model
from rlhf_harness.bench.mfu import peak_flops, update_flops_per_second, update_rates
from rlhf_harness.bench.sequential import unavailable_reason
from rlhf_harness.bench.settings import BenchSettings
from rlhf_harness.bench.shapes import SHAPES

from rlhf.plan.shapes import KNOWN_MODELS, causal_lm_parameters

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_gpu.py"


def run_script(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=False, capture_output=True, text=True, env=env, timeout=timeout)


def test_mfu_reproduces_the_first_gpu_measurement():
    # 32 prompts x 8 samples of 6 prompt + 128 response tokens; N counts the tied embedding once
    tokens = 32 * 8 * (6 + 128)
    small = causal_lm_parameters(KNOWN_MODELS["Qwen/Qwen2.5-0.5B-Instruct"])
    large = causal_lm_parameters(KNOWN_MODELS["Qwen/Qwen2.5-1.5B-Instruct"])
    assert (small, large) == (494_032_768, 1_543_714_304)
    assert update_flops_per_second(small, tokens, 1.09) == pytest.approx(93.3e12, rel=1e-3)
    assert update_flops_per_second(large, tokens, 1.29) == pytest.approx(246.3e12, rel=1e-3)
    assert update_flops_per_second(large, tokens, 1.29) / peak_flops("NVIDIA H200") == pytest.approx(0.249, abs=1e-3)


def test_update_rates_take_the_median_of_the_steps_that_report_an_update():
    records = [{"tokens": 100, "update_seconds": 2.0}, {"tokens": 100, "update_seconds": 1.0}, {"tokens": 100, "update_seconds": None}]
    # 6 x 1000 x 100 = 600,000 FLOPs in 2 s and in 1 s: 300,000 and 600,000 FLOP/s, median 450,000
    assert update_rates(records, parameters=1000, peak=1e6) == {"update_tflops": pytest.approx(4.5e-7), "update_mfu": pytest.approx(0.45)}
    assert update_rates(records, parameters=1000, peak=None)["update_mfu"] is None
    assert update_rates([{"tokens": 100, "update_seconds": None}], 1000, 1e6) == {"update_tflops": None, "update_mfu": None}


def test_peak_table_prefers_the_specific_names():
    assert peak_flops("NVIDIA H100 PCIe") == 756e12
    assert peak_flops("NVIDIA H100 80GB HBM3") == peak_flops("NVIDIA H200") == 989e12
    assert peak_flops("x86_64") is None


def test_qwen_shapes_are_the_public_configs():
    # typed from the public config.json files, independently of rlhf.plan.shapes
    expected = {"qwen2.5-0.5b": (896, 24, 14, 2, 4864), "qwen2.5-1.5b": (1536, 28, 12, 2, 8960)}
    for name, (hidden, layers, heads, kv_heads, intermediate) in expected.items():
        model = SHAPES[name].model
        assert (model["hidden_size"], model["num_layers"], model["num_heads"], model["num_key_value_heads"], model["intermediate_size"]) == (
            hidden, layers, heads, kv_heads, intermediate), name
        assert model["model_type"] == "qwen2" and model["vocab_size"] == 151_936 and model["tie_word_embeddings"], name
        run = SHAPES[name].run
        assert (run.prompts, run.samples, run.max_new_tokens, run.micro_batch_size, run.warmup) == (32, 8, 128, 32, 2), name


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-gpu") / "model"
    parameters = build_initial_model(path, SHAPES["tiny"].model, seed=0)
    return path, parameters


def test_tiny_shape_is_a_padded_qwen2(tiny_model):
    from transformers import AutoConfig

    path, parameters = tiny_model
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "qwen2" and config.vocab_size == 1024 and config.num_key_value_heads == 1
    # 1024 x 64 tied embedding + 2 layers (q/k/v with biases, o, SwiGLU, 2 norms) + final norm
    layer = 64 * 64 + 64 + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert parameters == 1024 * 64 + 2 * layer + 64


def floor_update(model_dir: Path, work_dir: Path, micro_batch_size: int, batch: dict) -> dict[str, torch.Tensor]:
    """The floor's weights after its update step over `batch` (micro-batches of `micro_batch_size`),
    with plain SGD at lr 1 in place of AdamW, so that the weights move by the (clipped) gradient
    itself rather than by Adam's nearly sign-like first step."""
    settings = BenchSettings(model_dir=str(model_dir), work_dir=str(work_dir), prompts=2, samples=4, threads=1,
                             micro_batch_size=micro_batch_size)
    arm = FloorArm(settings)
    arm.optimizer = torch.optim.SGD(arm.model.parameters(), lr=1.0)
    try:
        arm.policy_gradient_step(**batch)
        return {name: tensor.detach().clone() for name, tensor in arm.model.state_dict().items()}
    finally:
        arm.close()


def test_floor_micro_batches_accumulate_to_the_whole_batch_step(tiny_model, tmp_path):
    """Two micro-batches of 4 accumulate the gradient of one of 8: each micro-batch's loss is
    divided by the whole step's response tokens."""
    path, _ = tiny_model
    generator = torch.Generator().manual_seed(0)
    # 12 response tokens in the first micro-batch, 6 in the second: a per-micro-batch mean would weigh them alike
    response_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]] + [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]] * 2)
    batch = {
        "prompt_ids": torch.randint(7, 104, (8, 6), generator=generator), "prompt_mask": torch.tensor([[0, 0, 1, 1, 1, 1]] * 4 + [[1] * 6] * 4),
        "response_ids": torch.randint(7, 1024, (8, 5), generator=generator), "response_mask": response_mask,
        # small: the gradient norm stays below the clip (1.0), which would hide a wrong scale
        "advantages": 1e-3 * torch.randn(8, generator=generator),
    }
    initial = floor_update(path, tmp_path, micro_batch_size=8, batch={**batch, "advantages": torch.zeros(8)})
    whole = floor_update(path, tmp_path, micro_batch_size=8, batch=batch)
    split = floor_update(path, tmp_path, micro_batch_size=4, batch=batch)
    moved = max((whole[name] - initial[name]).abs().max().item() for name in whole)
    assert 1e-7 < moved < 1e-2  # the step moved the weights, by an unclipped gradient
    for name in whole:
        torch.testing.assert_close(split[name] - initial[name], whole[name] - initial[name], rtol=1e-4, atol=1e-7, msg=name)


def test_an_arm_whose_module_does_not_import_is_unavailable(tmp_path, monkeypatch):
    (tmp_path / "broken_engine.py").write_text("raise ImportError('built for another torch')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    needs = {"fast": "broken_engine", "absent": "no_such_module_for_bench_gpu"}
    assert unavailable_reason("fast", needs) == "import broken_engine failed: ImportError: built for another torch"
    assert unavailable_reason("absent", needs) == "no_such_module_for_bench_gpu is not installed"
    assert unavailable_reason("rlhf", needs) is None


def test_the_vllm_arm_is_skipped_where_vllm_does_not_import(tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "vllm.py").write_text("raise ImportError('no vLLM build for this machine')\n")
    out = tmp_path / "bench.json"
    done = run_script("--shape", "tiny", "--arms", "vllm", "--out", str(out),
                      env={"PYTHONPATH": os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["arms"] == {} and result["failed"] == {}
    assert result["skipped"] == {"vllm": "import vllm failed: ImportError: no vLLM build for this machine"}
    assert "arm vllm: skipped (import vllm failed" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--micro-batch-size", "3"], "--micro-batch-size (3) must divide the 16 sequences of a step"),
    (["--arms", "rlhf,deepspeed"], "--arms: deepspeed; valid arms: rlhf, trl, floor, vllm"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
])
def test_bad_arguments_exit_2_naming_the_option(args, message):
    done = run_script("--shape", "tiny", *args, timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


@pytest.mark.slow
def test_tiny_shape_on_the_cpu(tmp_path):
    out = tmp_path / "bench.json"
    done = run_script("--shape", "tiny", "--arms", "rlhf,trl,floor", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert list(result["arms"]) == ["rlhf", "trl", "floor"] and result["skipped"] == {} and result["failed"] == {}
    assert result["settings"]["device"] == "cpu" and result["peak_flops"] is None
    for name, arm in result["arms"].items():
        assert len(arm["steps"]) == 2, name
        for key in ("seconds_per_step", "generate_seconds", "update_seconds", "tokens_per_second", "update_tflops"):
            assert arm[key] > 0, (name, key)
        assert arm["update_seconds"] < arm["seconds_per_step"] and arm["update_mfu"] is None, name
        # 4 prompts x 4 samples, 6 prompt tokens each, 1 to 8 response tokens
        assert 16 * 7 <= arm["tokens_per_step"] <= 16 * 14, (name, arm["tokens_per_step"])
        peaks = arm["peak_memory_mib"]
        assert {"step", "generate", "update"} <= set(peaks) and all(value > 0 for value in peaks.values()), (name, peaks)
        assert result["workers"][name]["memory_kind"] == "rss", name
    assert {"rlhf_over_trl_step_time", "rlhf_over_floor_step_time"} <= set(result["ratios"])
    assert "update MFU" in done.stdout and "peak memory per phase" in done.stdout and "resident set size" in done.stdout
