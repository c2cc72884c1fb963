"""The roles the controller calls, built from a run. With the local backend each is an
in-process object; worker groups of the distributed backend expose the same methods, so the
loop never changes."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Union

from rlhf.algorithms.kl import AdaptiveKLController, FixedKLController
from rlhf.config.schema import RecipeConfig
from rlhf.config.validate import uses_critic
from rlhf.controller.setup import Run
from rlhf.engines.base import OptimConfig
from rlhf.engines.factory import build_engine
from rlhf.models.load import load_causal_lm
from rlhf.models.value_model import load_value_model, value_model_from_policy
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine
from rlhf.workers.actor import ActorWorker, PolicyLossConfig
from rlhf.workers.critic import CriticWorker, ValueLossConfig
from rlhf.workers.ref import RefWorker

KLController = Union[FixedKLController, AdaptiveKLController]


@dataclass
class Roles:
    """The workers of one RL run, and the KL controller whose β they share."""

    actor: ActorWorker
    rollout: RolloutEngine
    reward: RewardCombiner
    kl_controller: KLController
    ref: Optional[RefWorker] = None
    critic: Optional[CriticWorker] = None


def build_roles(run: Run) -> Roles:
    """Actor (a fresh RL optimiser over the current model), the rollout engine sharing its
    weights in-process, the reward, a frozen reference copy when a KL term is on, and a critic
    when the advantage estimator needs values."""
    config = run.config
    kl = config.algorithm.kl
    controller = AdaptiveKLController(kl.coef, kl.target, kl.horizon) if kl.adaptive else FixedKLController(kl.coef)
    return Roles(
        actor=build_actor(run), rollout=run.rollout, reward=run.reward, kl_controller=controller,
        ref=build_ref(run) if kl.coef > 0 else None,
        critic=build_critic(run) if uses_critic(config.algorithm.advantage) else None,
    )


def build_actor(run: Run) -> ActorWorker:
    config = run.config
    actor, kl = config.actor, config.algorithm.kl
    optim = OptimConfig(
        lr=actor.lr, betas=tuple(actor.betas), weight_decay=actor.weight_decay, warmup_steps=actor.warmup_steps,
        lr_schedule=actor.lr_schedule, total_steps=optimizer_steps(config, actor.mini_batch_size, actor.ppo_epochs), grad_clip=actor.grad_clip,
    )
    loss = PolicyLossConfig(
        ppo_epochs=actor.ppo_epochs, mini_batch_size=actor.mini_batch_size, micro_batch_size=actor.micro_batch_size,
        policy_loss=actor.policy_loss, clip_low=actor.clip_low, clip_high=actor.clip_high, dual_clip=actor.dual_clip,
        loss_agg=actor.loss_agg, entropy_coef=actor.entropy_coef,
        kl_coef=kl.coef if kl.placement == "loss" else 0.0, kl_kind=kl.kind, norm_length=config.rollout.max_new_tokens,
    )
    engine = build_engine(run.model, optim, config.train, autocast_dtype=run.autocast_dtype)
    return ActorWorker(engine, loss, temperature=config.rollout.temperature, seed=config.trainer.seed)


def build_ref(run: Run) -> RefWorker:
    config = run.config
    model = load_causal_lm(config.ref.path, run.device) if config.ref.path else copy.deepcopy(run.model)
    return RefWorker(model, temperature=config.rollout.temperature, micro_batch_size=config.actor.micro_batch_size)


def build_critic(run: Run) -> CriticWorker:
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
        loss=critic.loss, value_clip=critic.value_clip, ppo_epochs=critic.ppo_epochs, mini_batch_size=critic.mini_batch_size,
        micro_batch_size=critic.micro_batch_size, v_min=critic.hl_gauss.v_min, v_max=critic.hl_gauss.v_max, sigma_ratio=critic.hl_gauss.sigma_ratio,
    )
    engine = build_engine(model, optim, config.train, autocast_dtype=run.autocast_dtype)
    return CriticWorker(engine, loss, seed=config.trainer.seed)


def optimizer_steps(config: RecipeConfig, mini_batch_size: int, epochs: int) -> int:
    """Optimiser steps in the whole run of a model trained in `mini_batch_size` sequences over
    `epochs` passes per RL step (for the LR schedule)."""
    per_step = config.data.train_batch_size * config.rollout.n // mini_batch_size
    return max(1, config.trainer.total_steps * per_step * epochs)
