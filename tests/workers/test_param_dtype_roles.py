"""Which models `model.param_dtype: bfloat16` puts in bfloat16 when the roles are built: the
actor's module (and the HF rollout engine that shares it), the frozen reference; not the
critic, nor a reference an EMA anchor moves. Weight syncs into a float32 copy are exact."""

import pytest
import torch

from rlhf.config.loader import load_recipe
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.workers.build import build_colocated

BF16 = torch.bfloat16


def roles(tiny_path: str, names, *overrides: str):
    config = load_recipe(None, [f"model.path={tiny_path}", "model.param_dtype=bfloat16", "model.dtype=bfloat16",
                                "algorithm.kl.coef=0.05", "trainer.total_steps=1", *overrides])
    model = load_causal_lm(tiny_path, torch.device("cpu"))
    tokenizer = load_tokenizer(tiny_path)
    rollout = HFRolloutEngine(model, tokenizer, autocast_dtype=BF16)
    return model, build_colocated(config, names, model=model, tokenizer=tokenizer, model_path=tiny_path,
                                  device=torch.device("cpu"), rollout=rollout)


def dtypes(module: torch.nn.Module) -> set[torch.dtype]:
    return {param.dtype for param in module.parameters()}


def test_actor_rollout_and_reference_are_bf16_buffers_float32(tiny_path):
    model, colocated = roles(tiny_path, {"actor", "rollout", "ref"})
    assert colocated.actor.engine.module is model and colocated.rollout.model is model  # shared: nothing to sync
    assert dtypes(model) == {BF16} and dtypes(colocated.ref.model) == {BF16}
    assert {buffer.dtype for buffer in colocated.ref.model.buffers()} == {torch.float32}
    assert colocated.sync_weights() == 0
    # the reference starts as the policy: the same bf16 weights
    ref = dict(colocated.ref.model.named_parameters())
    assert all(torch.equal(ref[name], param) for name, param in model.named_parameters())


def test_an_ema_anchor_keeps_the_reference_float32_and_the_critic_is_float32(tiny_path):
    _, colocated = roles(tiny_path, {"actor", "ref", "critic"}, "ref.anchor.ema=0.9", "algorithm.advantage=gae")
    assert dtypes(colocated.ref.model) == {torch.float32}
    assert dtypes(colocated.critic.engine.module) == {torch.float32} and colocated.critic.engine.master is None
    before = {name: param.clone() for name, param in colocated.ref.model.named_parameters()}
    colocated.follow_policy(0.9)
    policy = dict(colocated.actor.named_weights())
    for name, param in colocated.ref.model.named_parameters():
        torch.testing.assert_close(param, 0.9 * before[name] + 0.1 * policy[name].float(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("receiver_dtype", [torch.float32, BF16])
def test_a_sync_into_a_separate_copy_is_exact(tiny_path, receiver_dtype):
    """The ZeRO-3 (or an asynchronous run's) rollout copy gets the bf16 weights exactly: a
    float32 copy holds them upcast, a bf16 copy holds the same bits."""
    _, colocated = roles(tiny_path, {"actor"})
    with torch.no_grad():  # weights the copy cannot already hold
        for master in colocated.actor.engine.master.masters:
            master.add_(0.01)
        colocated.actor.engine.master.copy_to_module()
    copy = load_causal_lm(tiny_path, torch.device("cpu")).to(receiver_dtype)
    engine = HFRolloutEngine(copy, load_tokenizer(tiny_path), autocast_dtype=BF16)
    weights = dict(colocated.actor.named_weights())
    assert engine.update_weights(weights.items()) == sum(t.numel() * 2 for t in weights.values())
    for name, param in copy.named_parameters():
        assert param.dtype == receiver_dtype and torch.equal(param, weights[name].to(receiver_dtype)), name
