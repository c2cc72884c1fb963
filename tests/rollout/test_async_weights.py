"""The trainer's weights reach the rollout process intact, on every training engine: after an
update, samples of the new version carry the log-probs the trainer itself gives them (LoRA
adapters merged, ZeRO-3 partitions gathered)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from rlhf.cli.main import RECIPES_DIR
from rlhf.config.loader import load_recipe
from rlhf.controller.loop import rollout_source
from rlhf.controller.roles import build_roles
from rlhf.controller.setup import build_run
from rlhf.data.batch import action_mask
from rlhf.timing import PhaseTimer

SMALL = ["sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=2", "actor.mini_batch_size=8",
         "actor.micro_batch_size=4", "rollout.mode=async", "rollout.max_new_tokens=8"]


@pytest.mark.parametrize("engine", [
    pytest.param([], id="torch", marks=pytest.mark.slow),  # the async end-to-end test of test-fast takes the same path
    pytest.param(["model.lora.rank=4"], id="lora", marks=pytest.mark.slow),
    pytest.param(["train.engine=deepspeed", "train.zero_stage=3"], id="zero3", marks=pytest.mark.slow),
    pytest.param(["rollout.engine=vllm", "rollout.vllm.kv_cache_gb=0.25"], id="vllm", marks=pytest.mark.slow),
])
def test_samples_of_a_new_version_have_the_trainers_logprobs(tmp_path: Path, engine: list[str]):
    if "rollout.engine=vllm" in engine:
        pytest.importorskip("vllm")
    tolerance = 1e-3 if "rollout.engine=vllm" in engine else 1e-4  # vLLM's CPU kernels differ from torch's by float rounding
    run = build_run(load_recipe(RECIPES_DIR / "quickstart.yaml", [*SMALL, *engine, f"trainer.output_dir={tmp_path / 'run'}"]), "test")
    roles = build_roles(run)
    source = rollout_source(run)
    try:
        first = source.next_batch(roles, PhaseTimer()).batch
        assert first["policy_version"].tolist() == [0] * 8
        # an update that moves every trained weight (adapters only, with LoRA)
        generator = torch.Generator().manual_seed(0)
        trained = [param for param in roles.actor.engine.module.parameters() if param.requires_grad]
        with gathered(trained, zero3="train.zero_stage=3" in engine), torch.no_grad():
            for param in trained:
                param.add_(0.2 * torch.randn(param.shape, generator=generator).to(param.dtype))
        assert source.after_step(roles, True) > 0
        source.next_batch(roles, PhaseTimer())  # requested before the update: version 0 or 1
        third = source.next_batch(roles, PhaseTimer()).batch  # may only start with version 1
        assert third["policy_version"].tolist() == [1] * 8
        trainer = roles.actor.compute_logprobs(third)
        mask = action_mask(third).bool()
        gap = (trainer - third["rollout_logprobs"])[mask].abs().max().item()
        assert gap < tolerance, gap
        stale_gap = (roles.actor.compute_logprobs(first) - first["rollout_logprobs"])[action_mask(first).bool()].abs().max().item()
        assert stale_gap > 1e-2  # the update did change the policy
    finally:
        source.close()
        roles.close()


@pytest.mark.slow
def test_episodes_of_a_new_version_carry_it_on_their_actions_and_the_trainers_logprobs(tmp_path: Path):
    """Multi-turn: the rollout process plays guess_number episodes against its own
    environments; after an update, the episodes of version 1 have the trainer's logprobs on
    every action token, the version on exactly the action tokens, and none (−1) on the
    environment's observations."""
    overrides = [*SMALL, "data.eval.size=8", f"trainer.output_dir={tmp_path / 'run'}"]
    run = build_run(load_recipe(RECIPES_DIR / "multi_turn" / "guess_number.yaml", overrides), "test")
    roles = build_roles(run)
    source = rollout_source(run)
    try:
        first = source.next_batch(roles, PhaseTimer()).batch
        assert first["policy_version"].tolist() == [0] * 8 and "env/turns_mean" in source.last.metrics
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in roles.actor.engine.module.parameters():
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
        assert source.after_step(roles, True) > 0
        source.next_batch(roles, PhaseTimer())
        third = source.next_batch(roles, PhaseTimer()).batch
        actions = third["action_mask"].bool()
        assert (third["response_mask"].bool() & ~actions).any(), "no episode saw an observation"
        assert (third["token_versions"][actions] == 1).all() and (third["token_versions"][~actions] == -1).all()
        gap = (roles.actor.compute_logprobs(third) - third["rollout_logprobs"])[actions].abs().max().item()
        assert gap < 1e-4, gap
    finally:
        source.close()
        roles.close()


def gathered(params, zero3: bool):
    """Under ZeRO-3 each parameter is a partition: gather it whole to change it."""
    if not zero3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


@pytest.mark.slow
@pytest.mark.parametrize("engine", [[], ["rollout.engine=vllm", "rollout.vllm.kv_cache_gb=0.25"]], ids=["hf", "vllm"])
def test_a_checkpoint_keeps_the_responses_begun_and_a_resume_goes_on_from_them(tmp_path: Path, engine: list[str]):
    """`state_dict` while the rollout process generates long responses: it pauses, hands over
    every row's response so far, and goes on; a source restored from that state requests those
    groups with their responses begun, and the samples it gets start with them."""
    if engine:
        pytest.importorskip("vllm")
    overrides = [*SMALL, "rollout.max_new_tokens=48", "async_training.generate_groups=1", f"trainer.output_dir={tmp_path / 'run'}", *engine]
    run = build_run(load_recipe(RECIPES_DIR / "quickstart.yaml", overrides), "test")
    roles = build_roles(run)
    source = rollout_source(run)
    try:
        source.next_batch(roles, PhaseTimer())
        for _ in range(20):  # the process is between calls only for moments
            state = torch.load(_saved(source.state_dict(), tmp_path), weights_only=True)
            if state["begun"]:
                break
        assert state["begun"], "no snapshot caught a generation under way"
    finally:
        source.close()
    begun = {int(group_id): rows for group_id, rows in state["begun"]}
    resumed = rollout_source(run)
    resumed.load_state_dict(state)
    try:
        seen = {}
        for _ in range(3):
            batch = resumed.next_batch(roles, PhaseTimer()).batch
            for row, group_id in enumerate(batch["group_index"]):
                seen.setdefault(group_id, []).append(batch["response_ids"][row][batch["response_mask"][row].bool()].tolist())
        continued = [group_id for group_id in begun if group_id in seen]
        assert continued, (sorted(begun), sorted(seen))
        for group_id in continued:  # each response begun is the start of one of the group's samples
            responses = list(seen[group_id])
            for prefix in sorted((row["tokens"] for row in begun[group_id]), key=len, reverse=True):
                match = next(i for i, response in enumerate(responses) if response[: len(prefix)] == prefix)
                responses.pop(match)
    finally:
        resumed.close()
        roles.close()


def _saved(state: dict, directory: Path) -> Path:
    """`state` written as a checkpoint's loop.pt would hold it."""
    path = directory / "loop.pt"
    torch.save(state, path)
    return path
