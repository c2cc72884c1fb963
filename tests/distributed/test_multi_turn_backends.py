"""Multi-turn episodes on the other backend and engine: Ray worker groups (two DeepSpeed ranks,
the environments in the driver) and vLLM generating every turn's actions."""

import pytest
from pathlib import Path

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow

RECIPE = str(Path(__file__).resolve().parents[2] / "recipes" / "multi_turn" / "guess_number.yaml")
SHORT = ["trainer.total_steps=2", "sft.stop_at_accuracy=0.05", "sft.eval_every=10", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=4",
         "actor.mini_batch_size=16", "actor.micro_batch_size=8", "trainer.eval_every=2"]


def assert_episodes_trained(records: list[dict]) -> None:
    assert "eval/success_rate" in records[0] and "eval/success_rate" in records[-1]
    for record in records[1:]:
        assert 1 <= record["env/turns_mean"] <= 6 and record["env/action_tokens_mean"] > 0
        assert record["actor/grad_norm"] > 0
        # the engine's logprobs of the actions match the trainer's over the action tokens
        assert record["rollout/logprob_diff_max"] < 1e-3


def test_episodes_on_ray_worker_groups(tmp_path, ray_cluster):
    out = tmp_path / "run"
    args = ["distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed", "train.zero_stage=2",
            "sync.check_every=1"]
    assert main(["train", RECIPE, f"trainer.output_dir={out}", *SHORT, *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert_episodes_trained(records)
    assert records[-1]["sync/probe_logprob_diff_max"] < 1e-3


def test_episodes_with_the_vllm_engine(tmp_path):
    pytest.importorskip("vllm")
    out = tmp_path / "run"
    args = ["rollout.engine=vllm", "rollout.logprobs=true", "rollout.vllm.kv_cache_gb=0.05"]
    assert main(["train", RECIPE, f"trainer.output_dir={out}", *SHORT, *args]) == 0
    assert_episodes_trained(read_jsonl(out / "metrics.jsonl"))


def test_archer_on_ray_worker_groups(tmp_path, ray_cluster):
    """ArCHer's utterance critic lives in the actor's processes; with the 'policy' backbone
    every ZeRO rank joins the policy forward that feeds its heads."""
    out = tmp_path / "run"
    args = ["distributed.backend=ray", "resources.pools.default.devices_per_node=2", "train.engine=deepspeed", "train.zero_stage=3",
            "algorithm.advantage=archer", "algorithm.archer.backbone=policy", "algorithm.archer.critic_updates=2",
            "algorithm.archer.critic_batch_size=8", "trainer.save_every=2"]
    assert main(["train", RECIPE, f"trainer.output_dir={out}", *SHORT, *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert_episodes_trained(records)
    assert records[-1]["archer/buffer_turns"] > 0 and records[-1]["archer/q_loss"] >= 0
