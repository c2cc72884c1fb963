"""The roles the controller calls, built from a run. With the local backend each is an
in-process object; the worker groups of the Ray backend (:mod:`rlhf.distributed.remote_roles`)
expose the same methods, so the loop never changes."""

from __future__ import annotations

import copy
from pathlib import Path
from collections.abc import Collection
from dataclasses import dataclass
from typing import Union

from rlhf.algorithms.kl import AdaptiveKLController, FixedKLController
from rlhf.config.schema import RecipeConfig
from rlhf.config.validate import uses_critic
from rlhf.controller.setup import Run
from rlhf.engines.base import OptimConfig
from rlhf.engines.factory import build_engine
from rlhf.models.load import load_causal_lm
from rlhf.models.lora import apply_lora, base_module, shares_base_as_reference
from rlhf.models.value_model import load_value_model, value_model_from_policy
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine
from rlhf.rollout.factory import build_rollout
from rlhf.rollout.timed import TimedRollout
from rlhf.workers.actor import ActorWorker, PolicyLossConfig
from rlhf.workers.critic import CriticWorker, ValueLossConfig
from rlhf.workers.ref import AdapterDisabledRef, RefWorker
from rlhf.workers.state import load_models, save_models

KLController = Union[FixedKLController, AdaptiveKLController]


@dataclass
class Models:
    """The model-holding roles of one process: the actor and its rollout engine, and the
    reference and critic when the run has them."""

    actor: ActorWorker | None = None
    rollout: RolloutEngine | None = None
    ref: RefWorker | AdapterDisabledRef | None = None
    critic: CriticWorker | None = None

    def sync_weights(self) -> int:
        """Push the actor's weights into the rollout engine; returns the bytes copied (none when
        the engine generates with the actor's own module, LoRA layers included)."""
        if getattr(self.rollout, "model", None) is base_module(self.actor.engine.module):
            return 0
        return self.rollout.update_weights(self.actor.named_weights())

    def follow_policy(self, ema: float) -> None:
        """Move the reference towards the actor (T1's dynamic anchor)."""
        self.ref.follow(self.actor.named_weights(), ema=ema)

    def save_state(self, directory: Path) -> None:
        """Engines, reference weights and random state into a checkpoint directory."""
        save_models(self, directory)

    def load_state(self, directory: Path) -> None:
        load_models(self, directory)


@dataclass
class Roles(Models):
    """Every role of one RL run, the reward, and the KL controller whose β they share."""

    reward: RewardCombiner | None = None
    kl_controller: KLController | None = None

    def close(self) -> None:
        """Stop what the roles started (nothing in-process)."""


def build_roles(run: Run) -> Roles:
    """The roles of `run` on its backend: in this process, or Ray worker groups."""
    config = run.config
    if config.distributed.backend == "ray":
        from rlhf.distributed.remote_roles import build_remote_roles

        roles = build_remote_roles(run, kl_controller(config))
    else:
        models = build_models(run, hosted_roles(config))
        roles = Roles(actor=models.actor, rollout=models.rollout, ref=models.ref, critic=models.critic, reward=run.reward, kl_controller=kl_controller(config))
    roles.rollout = TimedRollout(roles.rollout, config.rollout.timeout_s)  # every generate call has a limit
    return roles


def hosted_roles(config: RecipeConfig) -> set[str]:
    """The model roles a run has: actor and rollout always, ref with a KL term, critic when
    the advantage estimator needs values."""
    roles = {"actor", "rollout"}
    if config.algorithm.kl.coef > 0:
        roles.add("ref")
    if uses_critic(config.algorithm.advantage):
        roles.add("critic")
    return roles


def build_models(run: Run, roles: Collection[str], dp_size: int = 1) -> Models:
    """The model roles named in `roles` around `run.model`, for `dp_size` data-parallel ranks.

    Order matters: the reference and the critic copy the policy, and so does a rollout engine
    that cannot share the actor's module (ZeRO-3 partitions that module in place when the
    actor's engine is built, last)."""
    config = run.config
    # under LoRA a fixed reference is the actor's base with the adapter off: built with the actor
    adapter_off_ref = "ref" in roles and "actor" in roles and shares_base_as_reference(config.model.lora, config.ref.path, anchor_moves(config))
    ref = build_ref(run) if "ref" in roles and not adapter_off_ref else None
    critic = build_critic(run, dp_size) if "critic" in roles else None
    rollout = None
    if "rollout" in roles:
        shares_module = not (config.train.engine == "deepspeed" and config.train.zero_stage == 3)
        if shares_module and config.rollout.engine == "hf" and run.rollout is not None:
            rollout = run.rollout
        else:
            # the ranks of one tensor-parallel engine share a seed (they sample together)
            engine_index = run.rank // config.rollout.vllm.tensor_parallel_size if config.rollout.engine == "vllm" else run.rank
            rollout = build_rollout(config, run.model, run.tokenizer, run.model_path, share_module=shares_module, seed_offset=engine_index)
    actor = build_actor(run, dp_size) if "actor" in roles else None
    if adapter_off_ref:
        ref = AdapterDisabledRef(actor.engine.module, temperature=config.rollout.temperature, micro_batch_size=config.actor.micro_batch_size,
                          max_tokens=config.train.max_tokens_per_micro_batch)
    return Models(actor=actor, rollout=rollout, ref=ref, critic=critic)


def anchor_moves(config: RecipeConfig) -> bool:
    """True when a dynamic anchor (`ref.anchor`) moves the reference during the run."""
    return bool(config.ref.anchor.every or config.ref.anchor.ema)


def kl_controller(config: RecipeConfig) -> KLController:
    kl = config.algorithm.kl
    return AdaptiveKLController(kl.coef, kl.target, kl.horizon) if kl.adaptive else FixedKLController(kl.coef)


def build_actor(run: Run, dp_size: int = 1) -> ActorWorker:
    """The actor's engine over `run.model`; each of `dp_size` ranks trains on 1/dp_size of
    every mini-batch."""
    config = run.config
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
        kl_coef=kl.coef if kl.placement == "loss" else 0.0, kl_kind=kl.kind, norm_length=config.rollout.max_new_tokens,
    )
    # LoRA wraps the policy last: the reference, critic and rollout copies above are of the base
    model = apply_lora(run.model, config.model.lora) if config.model.lora.rank else run.model
    engine = build_engine(model, optim, config.train, autocast_dtype=run.autocast_dtype, bucket_mb=config.sync.bucket_mb,
                          collective_timeout_s=config.distributed.timeout_s)
    return ActorWorker(engine, loss, temperature=config.rollout.temperature, seed=config.trainer.seed)


def build_ref(run: Run) -> RefWorker:
    config = run.config
    model = load_causal_lm(config.ref.path, run.device) if config.ref.path else copy.deepcopy(run.model)
    return RefWorker(model, temperature=config.rollout.temperature, micro_batch_size=config.actor.micro_batch_size,
                          max_tokens=config.train.max_tokens_per_micro_batch)


def build_critic(run: Run, dp_size: int = 1) -> CriticWorker:
    """A value model initialised from `critic.path`, or from the policy's current backbone."""
    config, critic = run.config, run.config.critic
    outputs = critic.hl_gauss.num_bins if critic.loss == "hl_gauss" else 1
    if critic.path:
        model = load_value_model(critic.path, outputs, run.device, config.model.trust_remote_code)
    else:
        model = value_model_from_policy(run.model, outputs)
    optim = OptimConfig(
        lr=critic.lr, betas=tuple(critic.betas), weight_decay=critic.weight_decay, warmup_steps=critic.warmup_steps,
        lr_schedule=critic.lr_schedule, total_steps=optimizer_steps(config, critic.mini_batch_size, critic.ppo_epochs), grad_clip=critic.grad_clip,
    )
    loss = ValueLossConfig(
        loss=critic.loss, value_clip=critic.value_clip, ppo_epochs=critic.ppo_epochs, mini_batch_size=critic.mini_batch_size // dp_size,
        micro_batch_size=critic.micro_batch_size, max_tokens=config.train.max_tokens_per_micro_batch,
        v_min=critic.hl_gauss.v_min, v_max=critic.hl_gauss.v_max, sigma_ratio=critic.hl_gauss.sigma_ratio,
    )
    engine = build_engine(model, optim, config.train, autocast_dtype=run.autocast_dtype, collective_timeout_s=config.distributed.timeout_s)
    return CriticWorker(engine, loss, seed=config.trainer.seed)


def optimizer_steps(config: RecipeConfig, mini_batch_size: int, epochs: int) -> int:
    """Optimiser steps in the whole run of a model trained in `mini_batch_size` sequences over
    `epochs` passes per RL step (for the LR schedule)."""
    per_step = config.data.train_batch_size * config.rollout.n // mini_batch_size
    return max(1, config.trainer.total_steps * per_step * epochs)
