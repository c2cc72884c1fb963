"""Multi-turn episodes on the other backend and engine: Ray worker groups (DeepSpeed ZeRO-3
ranks, the environments and their sandboxes in the driver) and vLLM generating every turn's
actions."""

from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import tiny_overrides

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "multi_turn" / "guess_number.yaml")
SHORT = ["trainer.total_steps=2", "sft.stop_at_accuracy=0.05", "sft.eval_every=10", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=4",
         "actor.mini_batch_size=16", "actor.micro_batch_size=8", "trainer.eval_every=2"]


def test_the_8_gpu_math_tool_recipe_on_ray_with_archer(tmp_path, ray_cluster):
    """The MATH python-tool recipe's cluster layout (Ray, ZeRO-3, a reference for the KL term)
    shrunk to 2 CPU workers, with ArCHer's utterance critic in the actor's processes: with the
    'policy' backbone every ZeRO-3 rank joins the policy forward that feeds its heads."""
    recipe = "multi_turn/math_python_tool_qwen2.5-7b"
    args = [*tiny_overrides(recipe, tmp_path), "rollout.engine=hf", "algorithm.advantage=archer", "algorithm.archer.backbone=policy",
            "algorithm.archer.critic_updates=2", "algorithm.archer.critic_batch_size=8"]
    assert main(["train", recipe, *args]) == 0
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    last = records[-1]
    assert {"env/turns_mean", "reward/math/mean", "kl/sequence_mean", "sync/probe_logprob_diff_max", "eval/turns_mean"} <= set(last)
    assert last["archer/buffer_turns"] > 0 and last["archer/q_loss"] >= 0
    assert last["sync/probe_logprob_diff_max"] < 1e-3 and last["rollout/logprob_diff_max"] < 1e-3


def test_episodes_with_the_vllm_engine(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "run"
    args = ["rollout.engine=vllm", "rollout.logprobs=true", "rollout.vllm.kv_cache_gb=0.05"]
    assert main(["train", RECIPE, f"trainer.output_dir={out}", *SHORT, *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert "eval/success_rate" in records[0] and "eval/success_rate" in records[-1]
    for record in records[1:]:
        assert 1 <= record["env/turns_mean"] <= 5 and record["env/action_tokens_mean"] > 0
        # vLLM's logprobs of the actions match the trainer's over the action tokens (measured in
        # the single on-policy update, which needs no separate old-logprob pass)
        assert record["rollout/logprob_diff"] < 1e-3
