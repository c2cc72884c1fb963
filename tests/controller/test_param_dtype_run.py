"""`rlhf train` with `model.param_dtype: bfloat16` end to end: the quickstart trains with a
bfloat16 policy (shared with the HF rollout engine), a bfloat16 reference and float32 master
weights; the run resumes exactly; `rlhf export` writes the bfloat16 weights the run held; LoRA
and DeepSpeed ZeRO-3 (whose rollout engine keeps a float32 copy refreshed by weight syncs)
train too."""

from pathlib import Path

import pytest
import torch
from tiny_helpers import comparable_metrics, interrupt_rl_step
from transformers import AutoModelForCausalLM

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

BF16 = ["model.param_dtype=bfloat16", "model.dtype=bfloat16"]
# a KL term (a reference), an entropy bonus (a gradient even while every reward is 0), a
# cosine schedule with warm-up, 2 PPO epochs, the weight-sync probe after every sync
ARGS = [
    "trainer.total_steps=4", "trainer.save_every=2", "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4",
    "rollout.n=4", "actor.mini_batch_size=8", "actor.micro_batch_size=4", "actor.ppo_epochs=2", "actor.warmup_steps=1",
    "actor.lr=1e-3", "actor.entropy_coef=0.01", "algorithm.kl.coef=0.01", "sync.check_every=1", "trainer.eval_every=2", *BF16,
]
FINITE = ["reward/mean", "actor/pg_loss", "actor/entropy", "actor/grad_norm", "actor/kl", "kl/sequence_mean", "rollout/logprob_diff"]


def assert_trained(records: list[dict], steps: int) -> None:
    assert [r["step"] for r in records] == list(range(steps + 1))
    for record in records[1:]:
        for key in FINITE:
            assert torch.isfinite(torch.tensor(record[key])), (record["step"], key)
        assert record["actor/grad_norm"] > 0 and record["actor/skipped_updates"] == 0


def checkpointed_actor(run_dir: Path, step: int) -> dict:
    return torch.load(run_dir / "checkpoints" / f"step_{step:06d}" / "actor" / "engine.pt", weights_only=True)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    return out


def test_quickstart_trains_with_bf16_weights_and_float32_masters(straight: Path):
    assert_trained(read_jsonl(straight / "metrics.jsonl"), 4)
    state = checkpointed_actor(straight, 4)
    module, masters = state["module"], state["master_weights"]
    assert {tensor.dtype for tensor in module.values()} == {torch.bfloat16}
    assert {tensor.dtype for tensor in masters} == {torch.float32}
    # the module is its masters rounded (named parameters in order; tied weights once)
    params = [name for name, _ in AutoModelForCausalLM.from_pretrained(straight / "init_model").named_parameters()]
    assert all(torch.equal(module[name], master.to(torch.bfloat16)) for name, master in zip(params, masters, strict=True))
    assert {t.dtype for s in state["optimizer"]["state"].values() for t in s.values() if t.dim() > 0} == {torch.float32}


def test_a_crash_then_resume_gives_the_metrics_of_a_straight_run(tmp_path: Path, monkeypatch, straight: Path):
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 3)
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 1
    monkeypatch.undo()
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    expected = comparable_metrics(read_jsonl(straight / "metrics.jsonl"))
    assert comparable_metrics(read_jsonl(out / "metrics.jsonl")) == expected
    resumed, whole = checkpointed_actor(out, 4), checkpointed_actor(straight, 4)
    assert all(torch.equal(a, b) for a, b in zip(resumed["master_weights"], whole["master_weights"], strict=True))


def test_export_writes_the_bf16_weights_the_run_held(tmp_path: Path, straight: Path):
    out = tmp_path / "exported"
    assert main(["export", str(straight), str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out, dtype="auto").state_dict()
    module = checkpointed_actor(straight, 4)["module"]
    assert {tensor.dtype for tensor in exported.values()} == {torch.bfloat16}
    assert all(torch.equal(exported[name], tensor) for name, tensor in module.items())
    initial = AutoModelForCausalLM.from_pretrained(straight / "init_model").state_dict()
    assert any(not torch.equal(initial[name].to(torch.bfloat16), exported[name]) for name in initial)


@pytest.mark.parametrize("extra", [
    pytest.param(["model.lora.rank=4", "actor.lr=1e-2"], id="lora"),
    pytest.param(["train.engine=deepspeed", "train.zero_stage=3"], id="zero3", marks=pytest.mark.slow),
])
def test_lora_and_zero3_train_with_bf16_weights(tmp_path: Path, extra):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, "trainer.total_steps=2", *extra]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert_trained(records, 2)
    # the rollout engine generates with the trainer's weights (ZeRO-3: its own copy, synced)
    assert all(record["sync/probe_logprob_diff_max"] <= 0.5 for record in records[1:])
    if "model.lora.rank=4" in extra:
        state = checkpointed_actor(out, 2)
        assert set(state["module"]) == {name for name in state["module"] if ".lora_" in name}  # adapters only
        assert {t.dtype for t in state["module"].values()} == {torch.bfloat16}
        assert {t.dtype for t in state["master_weights"]} == {torch.float32}


def test_rlhf_eval_holds_the_policy_in_bf16_and_reproduces_the_final_evaluation(tmp_path: Path, straight: Path):
    import json

    from rlhf.config.loader import load_recipe
    from rlhf.controller.evaluation import build_policy

    assert main(["eval", str(straight), "trainer.num_threads=1"]) == 0
    metrics = json.loads((straight / "eval" / "step_000004" / "eval.json").read_text())["metrics"]
    final = read_jsonl(straight / "metrics.jsonl")[-1]
    for key in ("eval/accuracy", "eval/reward", "eval/response_length"):
        assert metrics[key] == pytest.approx(final[key]), key
    rollout, _ = build_policy(load_recipe(straight / "config.yaml"), str(straight / "init_model"))
    assert {param.dtype for param in rollout.model.parameters()} == {torch.bfloat16}
