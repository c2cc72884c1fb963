"""The roles the controller calls, on the run's backend.

With the local backend every role is an object in this process
(:func:`rlhf.workers.build.build_colocated`); with Ray each is a proxy to the worker group of
its pool (:mod:`rlhf.distributed.ray_backend`). Both expose the same methods, so the loop never
changes. What concerns several roles at once (the weight sync, the dynamic anchor,
checkpoints, shutdown) goes through `processes`: the one :class:`Colocated` of a local run, or
the groups of a Ray run.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from rlhf.algorithms.advantages import estimator
from rlhf.algorithms.kl import AdaptiveKLController, FixedKLController
from rlhf.config.schema import RecipeConfig
from rlhf.controller.setup import Run
from rlhf.rewards.combine import RewardCombiner
from rlhf.rewards.registry import MODEL_SOURCES
from rlhf.rollout.registry import rollout_engine
from rlhf.rollout.timed import TimedRollout
from rlhf.workers.build import build_colocated

KLController = Union[FixedKLController, AdaptiveKLController]


@dataclass
class Roles:
    """Every role of one RL run, the reward, and the KL controller whose β they share."""

    actor: Any
    rollout: Any
    ref: Any = None
    critic: Any = None
    reward: RewardCombiner | None = None
    kl_controller: KLController | None = None
    processes: Any = None
    """Colocated (local) or RayProcesses: sync_weights, follow_policy, save/load_state, close."""
    utterance_critic: Any = None
    """ArCHer's off-policy utterance critic (algorithm.advantage archer), in the actor's processes."""

    def sync_weights(self) -> int:
        """Push the actor's weights into the rollout engine(s); returns the bytes moved."""
        return self.processes.sync_weights()

    def follow_policy(self, ema: float) -> None:
        """Move the reference towards the actor (T1's dynamic anchor)."""
        self.processes.follow_policy(ema)

    def save_state(self, directory: Path) -> None:
        """Every process's part of a checkpoint into `directory`."""
        self.processes.save_state(directory)

    def load_state(self, directory: Path) -> None:
        self.processes.load_state(directory)

    def checkpoint_parts(self) -> list[str]:
        """Files that every complete checkpoint directory holds (one per process)."""
        return self.processes.checkpoint_parts()

    def close(self) -> None:
        """Stop what the roles started (engines, worker groups)."""
        self.processes.close()


def build_roles(run: Run) -> Roles:
    """The roles of `run` on its backend: in this process, or Ray worker groups."""
    config = run.config
    if config.distributed.backend == "ray":
        roles = _ray_roles(run)
    else:
        local = build_colocated(config, model_roles(config) - {"reward_model"}, model=run.model, tokenizer=run.tokenizer,
                                model_path=run.model_path, device=run.device, rollout=run.rollout)
        roles = Roles(local.actor, local.rollout, local.ref, local.critic, run.reward, kl_controller(config), local, local.utterance_critic)
    roles.rollout = TimedRollout(roles.rollout, config.rollout.timeout_s)  # every generate call has a limit
    return roles


def _ray_roles(run: Run) -> Roles:
    """Worker groups for the pools of the run's roles; the reward sources' models are served by
    the `reward_model` group."""
    from rlhf.distributed.ray_backend import GroupScorer, start_worker_groups

    config = run.config
    pools: dict[str, set[str]] = defaultdict(set)
    for role in model_roles(config):
        pools[config.resources.pool_of(role)].add(role)
    remote = start_worker_groups(
        config, model_path=policy_checkpoint(run), output_dir=run.output_dir, tokenizer=run.tokenizer, pools=dict(pools),
        reward_models=run.reward.model_specs(), ranks_per_engine=rollout_engine(config.rollout.engine).ranks_per_engine(config),
    )
    if remote.reward_model is not None:
        run.reward.attach_scorers(lambda name: GroupScorer(remote.reward_model, name))
    return Roles(remote.actor, remote.rollout, remote.ref, remote.critic, run.reward, kl_controller(config), remote.processes,
                 remote.utterance_critic)


def model_roles(config: RecipeConfig) -> set[str]:
    """The model-holding roles a run has: actor and rollout always, ref with a KL term, critic
    when the advantage estimator needs values, utterance_critic with ArCHer, reward_model when a
    reward source is a model."""
    roles = {"actor", "rollout"}
    if config.algorithm.kl.coef > 0:
        roles.add("ref")
    if estimator(config.algorithm.advantage).needs_critic:
        roles.add("critic")
    if estimator(config.algorithm.advantage).needs_utterance_critic:
        roles.add("utterance_critic")
    if any(source.type in MODEL_SOURCES for source in config.reward.sources):
        roles.add("reward_model")
    return roles


def kl_controller(config: RecipeConfig) -> KLController:
    kl = config.algorithm.kl
    return AdaptiveKLController(kl.coef, kl.target, kl.horizon) if kl.adaptive else FixedKLController(kl.coef)


def policy_checkpoint(run: Run) -> str:
    """The checkpoint the workers load: the recipe's model, or the SFT warm start's weights
    (saved to `<output_dir>/sft_model` when SFT ran in this process)."""
    if run.model is None or not run.config.sft.enabled:
        return run.model_path
    target = run.output_dir / "sft_model"
    if (target / "config.json").exists():  # a resumed run: SFT ran before, its checkpoint holds the rest
        return str(target)
    run.model.save_pretrained(target)
    run.tokenizer.save_pretrained(target)
    return str(target)
