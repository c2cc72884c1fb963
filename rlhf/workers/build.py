"""Building the roles of one process from plain arguments: the recipe, the policy module loaded
in this process, its tokenizer and checkpoint path, and where this process stands in its worker
group (rank, data-parallel size).

The controller calls this for the local backend; each Ray worker calls it for the roles of its
pool. Neither needs the other: nothing here knows about runs, backends or the controller.
"""

from __future__ import annotations

import copy
from collections.abc import Collection

import torch

from rlhf.config.lengths import longest_response
from rlhf.config.schema import RecipeConfig
from rlhf.engines.base import OptimConfig
from rlhf.engines.factory import build_engine
from rlhf.engines.registry import training_engine
from rlhf.models.load import autocast_dtype, cast_parameters, load_causal_lm, param_dtype
from rlhf.models.lora import apply_lora, shares_base_as_reference
from rlhf.models.value_model import load_value_model, value_model_from_policy
from rlhf.rollout.base import RolloutEngine
from rlhf.rollout.registry import build_rollout, rollout_engine
from rlhf.workers.actor import ActorWorker, PolicyLossConfig
from rlhf.workers.colocated import Colocated
from rlhf.workers.critic import CriticWorker, ValueLossConfig
from rlhf.workers.ref import AdapterDisabledRef, RefWorker
from rlhf.workers.reward_model import RewardModels, RewardModelSpec

MODEL_ROLES = ("actor", "rollout", "ref", "critic", "reward_model", "utterance_critic")


def build_colocated(
    config: RecipeConfig, roles: Collection[str], *, model: torch.nn.Module | None, tokenizer, model_path: str,
    device: torch.device, rank: int = 0, dp_size: int = 1, rollout: RolloutEngine | None = None,
    reward_models: dict[str, RewardModelSpec] | None = None, tag: str = "local",
) -> Colocated:
    """The roles named in `roles` around the policy `model`, for rank `rank` of `dp_size`
    data-parallel ranks.

    `rollout` is an engine this process already has over `model` (the controller's, used for
    the SFT warm start), taken when the recipe's engine can share the trainer's module.
    Order matters: the reference and the critic copy the policy, and so does a rollout engine
    that cannot share the actor's module (ZeRO-3 partitions that module in place when the
    actor's engine is built, last).
    """
    unknown = set(roles) - set(MODEL_ROLES)
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; valid: {', '.join(MODEL_ROLES)}")
    # under LoRA a fixed reference is the actor's base with the adapter off: built with the actor
    adapter_off_ref = "ref" in roles and "actor" in roles and shares_base_as_reference(config.model.lora, config.ref.path, anchor_moves(config))
    colocated = Colocated(tag=tag, writes_shared=rank == 0)
    if "ref" in roles and not adapter_off_ref:
        colocated.ref = build_ref(config, model, device)
    if "critic" in roles:
        colocated.critic = build_critic(config, model, device, dp_size)
    if "rollout" in roles:
        colocated.rollout = rollout_for(config, model, tokenizer, model_path, rank, rollout)
    if "reward_model" in roles:
        colocated.reward_model = RewardModels(reward_models or {})
    # a 'separate' ArCHer backbone copies the policy now, before ZeRO-3 can partition it
    archer_backbone = separate_archer_backbone(config, model) if "utterance_critic" in roles else None
    if "actor" in roles:
        colocated.actor = build_actor(config, model, dp_size)
    if adapter_off_ref:
        colocated.ref = AdapterDisabledRef(colocated.actor.engine.module, temperature=config.rollout.temperature,
                                           micro_batch_size=config.actor.micro_batch_size, max_tokens=config.train.max_tokens_per_micro_batch)
    if "utterance_critic" in roles:  # beside the actor: its heads may read the policy's hidden states
        colocated.utterance_critic = build_archer_critic(config, colocated.actor.engine.module, archer_backbone, device)
    return colocated


def separate_archer_backbone(config: RecipeConfig, model: torch.nn.Module) -> torch.nn.Module | None:
    """The backbone of a 'separate' ArCHer critic: `critic.path`'s, or a copy of the policy's
    current backbone (after the SFT warm start, on every backend), as the PPO critic's is.
    None for the 'policy' backbone, which reads the actor's own module."""
    if config.algorithm.archer.backbone != "separate":
        return None
    if config.critic.path:
        from rlhf.workers.utterance_critic import load_backbone

        return load_backbone(config.critic.path)
    return copy.deepcopy(model.base_model).float()


def build_archer_critic(config: RecipeConfig, policy_module: torch.nn.Module, backbone: torch.nn.Module | None, device: torch.device):
    """ArCHer's utterance critic (`algorithm.archer`): heads over the policy's hidden states
    (`backbone: policy`) or over a backbone of its own (:func:`separate_archer_backbone`).
    Every rank of the actor's group holds an identical copy."""
    from rlhf.workers.utterance_critic import build_utterance_critic

    return build_utterance_critic(config.algorithm.archer, policy_module=policy_module, backbone=backbone,
                                  device=device, seed=config.trainer.seed, gamma=config.algorithm.turn_gamma,
                                  micro_batch_size=config.critic.micro_batch_size)


def rollout_for(config: RecipeConfig, model: torch.nn.Module | None, tokenizer, model_path: str, rank: int,
                existing: RolloutEngine | None) -> RolloutEngine:
    """The rollout engine of rank `rank`: `existing` when it can generate with the trainer's
    module, else a new engine (its own copy of the module, or its own weights from
    `model_path`). The ranks of one tensor-parallel engine share a seed (they sample together)."""
    spec = rollout_engine(config.rollout.engine)
    shares_module = not training_engine(config.train.engine).partitions_module(config.train)
    if shares_module and spec.needs_module and existing is not None:
        return existing
    return build_rollout(config, model, tokenizer, model_path, share_module=shares_module,
                         seed_offset=rank // spec.ranks_per_engine(config))


def anchor_moves(config: RecipeConfig) -> bool:
    """True when a dynamic anchor (`ref.anchor`) moves the reference during the run."""
    return bool(config.ref.anchor.every or config.ref.anchor.ema)


def build_actor(config: RecipeConfig, model: torch.nn.Module, dp_size: int = 1) -> ActorWorker:
    """The actor's engine over `model`; each of `dp_size` ranks trains on 1/dp_size of every
    mini-batch."""
    actor, kl = config.actor, config.algorithm.kl
    optim = OptimConfig(
        lr=actor.lr, betas=tuple(actor.betas), weight_decay=actor.weight_decay, warmup_steps=actor.warmup_steps,
        lr_schedule=actor.lr_schedule, total_steps=optimizer_steps(config, actor.mini_batch_size, actor.ppo_epochs), grad_clip=actor.grad_clip,
    )
    loss = PolicyLossConfig(
        ppo_epochs=actor.ppo_epochs, mini_batch_size=actor.mini_batch_size // dp_size, micro_batch_size=actor.micro_batch_size,
        max_tokens=config.train.max_tokens_per_micro_batch,
        policy_loss=actor.policy_loss, clip_low=actor.clip_low, clip_high=actor.clip_high, dual_clip=actor.dual_clip,
        loss_agg=actor.loss_agg, entropy_coef=actor.entropy_coef,
        kl_coef=kl.coef if kl.placement == "loss" else 0.0, kl_kind=kl.kind, norm_length=longest_response(config),
        off_policy=actor.off_policy.correction, off_policy_bounds=actor.off_policy.bounds(),
    )
    # LoRA wraps the policy last: the reference, critic and rollout copies are of the base
    module = apply_lora(model, config.model.lora) if config.model.lora.rank else model
    engine = build_engine(module, optim, config.train, autocast_dtype=autocast_dtype(config.model), param_dtype=param_dtype(config.model),
                          bucket_mb=config.sync.bucket_mb, collective_timeout_s=config.distributed.timeout_s)
    return ActorWorker(engine, loss, temperature=config.rollout.temperature, seed=config.trainer.seed)


def build_ref(config: RecipeConfig, model: torch.nn.Module, device: torch.device) -> RefWorker:
    """A frozen reference: `ref.path`, or a copy of the initial policy; held in
    `model.param_dtype` like the policy, except under an EMA anchor (`ref.anchor.ema`), whose
    small steps towards the policy a bfloat16 reference would round away."""
    reference = load_causal_lm(config.ref.path, device, config.model.trust_remote_code) if config.ref.path else copy.deepcopy(model)
    if not config.ref.anchor.ema:
        cast_parameters(reference, param_dtype(config.model))
    return RefWorker(reference, temperature=config.rollout.temperature, micro_batch_size=config.actor.micro_batch_size,
                     max_tokens=config.train.max_tokens_per_micro_batch)


def build_critic(config: RecipeConfig, model: torch.nn.Module, device: torch.device, dp_size: int = 1) -> CriticWorker:
    """A value model initialised from `critic.path`, or from the policy's current backbone."""
    critic = config.critic
    outputs = critic.hl_gauss.num_bins if critic.loss == "hl_gauss" else 1
    if critic.path:
        value_model = load_value_model(critic.path, outputs, device, config.model.trust_remote_code)
    else:
        value_model = value_model_from_policy(model, outputs)
    optim = OptimConfig(
        lr=critic.lr, betas=tuple(critic.betas), weight_decay=critic.weight_decay, warmup_steps=critic.warmup_steps,
        lr_schedule=critic.lr_schedule, total_steps=optimizer_steps(config, critic.mini_batch_size, critic.ppo_epochs), grad_clip=critic.grad_clip,
    )
    loss = ValueLossConfig(
        loss=critic.loss, value_clip=critic.value_clip, ppo_epochs=critic.ppo_epochs, mini_batch_size=critic.mini_batch_size // dp_size,
        micro_batch_size=critic.micro_batch_size, max_tokens=config.train.max_tokens_per_micro_batch,
        v_min=critic.hl_gauss.v_min, v_max=critic.hl_gauss.v_max, sigma_ratio=critic.hl_gauss.sigma_ratio,
    )
    engine = build_engine(value_model, optim, config.train, autocast_dtype=autocast_dtype(config.model), collective_timeout_s=config.distributed.timeout_s)
    return CriticWorker(engine, loss, seed=config.trainer.seed)


def optimizer_steps(config: RecipeConfig, mini_batch_size: int, epochs: int) -> int:
    """Optimiser steps in the whole run of a model trained in `mini_batch_size` sequences over
    `epochs` passes per RL step (for the LR schedule)."""
    per_step = config.data.train_batch_size * config.rollout.n // mini_batch_size
    return max(1, config.trainer.total_steps * per_step * epochs)
