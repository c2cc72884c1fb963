"""LoRA end to end: `rlhf train quickstart model.lora.rank=4` trains only the
adapter with the torch engine and with DeepSpeed ZeRO-2 and ZeRO-3, leaves the base weights
bit for bit as loaded, passes the weight-sync probe after every sync, checkpoints only the
adapter, resumes exactly, and `rlhf export` writes a merged model that plain transformers load."""

from pathlib import Path

import pytest
import torch
from tiny_helpers import comparable_metrics, interrupt_rl_step
from transformers import AutoModelForCausalLM

from rlhf.cli.main import main
from rlhf.controller import loop
from rlhf.logging.jsonl import read_jsonl
from rlhf.models.lora import base_name
from rlhf.workers.ref import AdapterDisabledRef

ADAPTER_PARAMS = 17_408
"""Rank 4 on the 7 projections of the tiny model's 2 layers (of ~0.36M parameters)."""

REWARD = '''
def digits(prompt, response, ground_truth, **extra):
    """Share of digits in the response: varies across a random model's samples, so GRPO has
    non-zero advantages without an SFT warm start."""
    return sum(ch.isdigit() for ch in response) / max(1, len(response))
'''

ARGS = [
    "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=8",
    "actor.micro_batch_size=4", "actor.lr=2e-2", "actor.warmup_steps=0", "model.lora.rank=4", "model.lora.alpha=8",
    "algorithm.kl.coef=0.01", "sync.check_every=1", "trainer.num_threads=1",
]
ENGINES = {"torch": ["train.engine=torch"], "zero2": ["train.engine=deepspeed", "train.zero_stage=2"], "zero3": ["train.engine=deepspeed", "train.zero_stage=3"]}


def reward_args(tmp_path: Path) -> list[str]:
    (tmp_path / "digits.py").write_text(REWARD)
    return [f"reward.sources=[{{type: function, path: {tmp_path / 'digits.py'}, name: digits}}]"]


def train_capturing_roles(args: list[str], monkeypatch) -> object:
    """Run `rlhf train` in this process; returns the roles it trained."""
    built = []
    real_build = loop.build_roles
    monkeypatch.setattr(loop, "build_roles", lambda run: built.append(real_build(run)) or built[-1])
    assert main(["train", "quickstart", *args]) == 0
    return built[0]


def adam_state_numel(engine) -> int:
    """Elements of AdamW's first moments: the parameters the optimiser really holds."""
    optimizer = engine.optimizer if hasattr(engine, "optimizer") else engine.ds_engine.optimizer.optimizer
    return sum(state["exp_avg"].numel() for state in optimizer.state.values())


@pytest.mark.parametrize("engine", ENGINES.values(), ids=ENGINES.keys())
def test_lora_trains_only_the_adapter_and_syncs_merged_weights(tmp_path: Path, monkeypatch, engine):
    run_dir = tmp_path / "run"
    roles = train_capturing_roles([f"trainer.output_dir={run_dir}", "trainer.total_steps=3", *ARGS, *reward_args(tmp_path), *engine], monkeypatch)
    trained = dict(roles.actor.engine.named_weights())  # PEFT names (gathered under ZeRO-3)
    initial = AutoModelForCausalLM.from_pretrained(run_dir / "init_model").state_dict()
    # 1. base weights bit-identical, adapters trained, the optimiser holds the adapters only
    base = {base_name(name): tensor for name, tensor in trained.items() if ".lora_" not in name}
    assert base.keys() == {name for name, _ in AutoModelForCausalLM.from_pretrained(run_dir / "init_model").named_parameters()}
    assert all(torch.equal(tensor, initial[name]) for name, tensor in base.items())
    assert all(trained[name].abs().sum() > 0 for name in trained if ".lora_B." in name)  # PEFT starts B at 0
    assert adam_state_numel(roles.actor.engine) == ADAPTER_PARAMS
    # 2. the reference is the base with the adapter off (no copy); the policy moved away from it
    assert isinstance(roles.ref, AdapterDisabledRef)
    records = read_jsonl(run_dir / "metrics.jsonl")[1:]
    assert records[-1]["kl/sequence_mean"] > 0
    # 3. finite losses and rewards; the probe check ran after every sync (ZeRO-3: into a copy)
    for record in records:
        assert all(torch.isfinite(torch.tensor(record[key])) for key in ("reward/mean", "actor/pg_loss", "actor/grad_norm"))
        assert record["sync/probe_logprob_diff_max"] < 1e-3
    assert records[-1]["sync/bytes"] > 0 if "zero_stage=3" in engine[-1] else records[-1]["sync/bytes"] == 0


def test_export_merges_the_adapter_into_a_plain_model(tmp_path: Path, monkeypatch):
    run_dir, out = tmp_path / "run", tmp_path / "exported"
    roles = train_capturing_roles([f"trainer.output_dir={run_dir}", "trainer.total_steps=2", *ARGS, *reward_args(tmp_path)], monkeypatch)
    state = torch.load(run_dir / "checkpoints" / "step_000002" / "actor" / "engine.pt", weights_only=True)["module"]
    assert sum(tensor.numel() for tensor in state.values()) == ADAPTER_PARAMS and all(".lora_" in name for name in state)
    assert main(["export", str(run_dir), str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out)  # plain transformers, no PEFT
    assert not any("lora" in name for name, _ in exported.named_parameters())
    ids = torch.randint(3, 20, (3, 9), generator=torch.Generator().manual_seed(0))
    policy = roles.actor.engine.module.eval()
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-5, rtol=0)
    from peft import PeftModel

    adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(run_dir / "init_model"), out / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(adapter(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-5, rtol=0)


def test_a_lora_run_with_sft_resumes_exactly(tmp_path: Path, monkeypatch, capsys):
    """The SFT warm start trains the whole base, then LoRA trains on top: the adapter-only
    checkpoint needs that base back (from sft_model/) to resume exactly."""
    sft = ["sft.enabled=true", "sft.max_steps=3", "sft.batch_size=16", "sft.eval_every=1000", "sft.stop_at_accuracy=1.0", "sft.val_size=8"]
    args = ["trainer.total_steps=4", "trainer.save_every=2", *ARGS, *reward_args(tmp_path), "actor.ppo_epochs=2", *sft]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(["train", "quickstart", f"trainer.output_dir={straight}", *args]) == 0
    interrupt_rl_step(monkeypatch, 3, sigterm=True)  # the step finishes, checkpoints, then the run stops
    assert main(["train", "quickstart", f"trainer.output_dir={interrupted}", *args]) == 130
    monkeypatch.undo()
    assert main(["train", "quickstart", f"trainer.output_dir={interrupted}", *args]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert comparable_metrics(read_jsonl(interrupted / "metrics.jsonl")) == comparable_metrics(read_jsonl(straight / "metrics.jsonl"))


def test_target_modules_are_checked_against_the_model(tmp_path: Path, capsys):
    args = [f"trainer.output_dir={tmp_path / 'run'}", "trainer.total_steps=1", *ARGS, "model.lora.target_modules=[q_proj,qkv_proj]"]
    assert main(["train", "quickstart", *args]) == 2
    error = capsys.readouterr().err
    assert "model.lora.target_modules: ['qkv_proj'] match no linear layer" in error and "gate_proj, k_proj" in error


@pytest.mark.slow
def test_vllm_receives_the_merged_weights(tmp_path: Path):
    pytest.importorskip("vllm")
    run_dir = tmp_path / "run"
    args = [f"trainer.output_dir={run_dir}", "trainer.total_steps=2", *ARGS, *reward_args(tmp_path), "rollout.engine=vllm", "rollout.logprobs=true"]
    assert main(["train", "quickstart", *args]) == 0
    for record in read_jsonl(run_dir / "metrics.jsonl")[1:]:
        assert record["actor/grad_norm"] > 0 and record["sync/bytes"] > 0
        assert record["sync/probe_logprob_diff_max"] < 1e-3
