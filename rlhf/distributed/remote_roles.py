"""The controller's view of the Ray backend: role objects with the methods of the local ones,
each call dispatched over a worker group (see :mod:`rlhf.distributed.dispatch`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from rlhf.config.distributed_schema import DistributedConfig
from rlhf.controller.roles import KLController, Roles, hosted_roles
from rlhf.controller.setup import Run
from rlhf.data.batch import Batch
from rlhf.distributed.dispatch import gather_engines, gather_shards, mean_metrics, shard_batch, shard_for_engines
from rlhf.distributed.group import WorkerGroup, wait_calls
from rlhf.rollout.base import SamplingParams


def split_call(group: WorkerGroup, method: str, batch: Batch, *args, allow_padding: bool = True):
    """`method(shard, *args)` on every rank with its shard of `batch`; the gathered result."""
    shards, padding = shard_batch(batch, group.world_size, allow_padding=allow_padding)
    return gather_shards(group.call_per_rank(method, [(shard, *args) for shard in shards]), padding)


def split_metrics(group: WorkerGroup, method: str, batch: Batch, *args) -> dict[str, float]:
    """A training call: every rank trains on an equal shard (no padding: no row may count
    twice); the ranks' metrics averaged."""
    shards, _ = shard_batch(batch, group.world_size, allow_padding=False)
    return mean_metrics(group.call_per_rank(method, [(shard, *args) for shard in shards]))


class RemoteRollout:
    """Generation split over the rollout engines of a group: one per rank, or one per
    `tensor_parallel_size` ranks."""

    def __init__(self, group: WorkerGroup, tokenizer, tensor_parallel_size: int = 1):
        self.group, self.tokenizer, self.tp = group, tokenizer, tensor_parallel_size

    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        per_rank, padding = shard_for_engines(prompts, self.group.world_size, self.tp)
        out = gather_engines(self.group.call_per_rank("generate", [(batch, sampling) for batch in per_rank]), self.tp, padding)
        out.meta["tokenizer"] = self.tokenizer
        return out

    def sleep(self) -> None:
        self.group.call("sleep_rollout")

    def wake(self) -> None:
        self.group.call("wake_rollout")


class RemoteActor:
    """The actor's training engine, data-parallel over its group."""

    def __init__(self, group: WorkerGroup, run: Run):
        actor = run.config.actor
        self.group, self.temperature = group, run.config.rollout.temperature
        self.ppo_epochs, self.mini_batch_size = actor.ppo_epochs, actor.mini_batch_size
        train = run.config.train
        self.description = f"{train.engine} engine (ZeRO-{train.zero_stage}) on {group.description}"

    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        return split_call(self.group, "actor_logprobs", batch)

    def is_single_on_policy_update(self, batch_size: int) -> bool:
        return self.ppo_epochs == 1 and self.mini_batch_size >= batch_size

    def update_policy(self, batch: Batch, kl_coef: float | None = None) -> dict[str, float]:
        return split_metrics(self.group, "update_policy", batch, kl_coef)


class RemoteRef:
    def __init__(self, group: WorkerGroup):
        self.group = group

    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        return split_call(self.group, "ref_logprobs", batch)


class RemoteCritic:
    def __init__(self, group: WorkerGroup):
        self.group = group

    def compute_values(self, batch: Batch) -> torch.Tensor:
        return split_call(self.group, "critic_values", batch)

    def update_critic(self, batch: Batch) -> dict[str, float]:
        return split_metrics(self.group, "update_critic", batch)


@dataclass
class RemoteRoles(Roles):
    """Roles whose models live in worker groups; the reward stays in the controller."""

    groups: dict[str, WorkerGroup] = field(default_factory=dict)
    bucket_bytes: int = 256 * 2**20
    """`sync.bucket_mb` in bytes."""

    def sync_weights(self) -> int:
        """Push the actor's weights into every rollout engine; returns the bytes loaded, summed
        over the engines. Colocated: each actor rank loads its own engine in-process. A rollout
        pool of its own: actor rank 0 broadcasts (see :mod:`rlhf.distributed.weight_channel`)."""
        actor_group, rollout_group = self.actor.group, self.rollout.group
        if rollout_group is actor_group:
            return sum(actor_group.call("sync_weights"))
        calls = [actor_group.submit("send_weights", self.bucket_bytes), rollout_group.submit("receive_weights")]
        _, received = wait_calls(calls, actor_group.dist.timeout_s)
        return sum(received)

    def follow_policy(self, ema: float) -> None:
        self.actor.group.call("follow_policy", ema)

    def save_state(self, directory) -> None:
        """Every rank of every group writes its part (a shared filesystem across nodes)."""
        wait_calls([group.submit("save_state", str(directory)) for group in self.groups.values()], self.actor.group.dist.timeout_s)

    def load_state(self, directory) -> None:
        wait_calls([group.submit("load_state", str(directory)) for group in self.groups.values()], self.actor.group.dist.timeout_s)

    def close(self) -> None:
        for group in self.groups.values():
            group.shutdown()
        self.groups = {}


def start_ray(dist: DistributedConfig) -> None:
    """Connect to the cluster `distributed.address` names, or start a local one."""
    import ray

    if ray.is_initialized():
        return
    options = dict(include_dashboard=False, log_to_driver=True)
    if dist.address == "local":
        ray.init(**options)
    elif dist.address == "auto":
        try:
            ray.init(address="auto", **options)
        except ConnectionError:
            ray.init(**options)
    else:
        ray.init(address=dist.address, **options)


def build_remote_roles(run: Run, kl_controller: KLController) -> RemoteRoles:
    """One worker group per pool that hosts a role, started from the policy checkpoint."""
    config = run.config
    start_ray(config.distributed)
    by_pool: dict[str, set[str]] = defaultdict(set)
    for role in hosted_roles(config):
        by_pool[config.resources.pool_of(role)].add(role)
    use_gpu = config.trainer.device == "cuda" or (config.trainer.device == "auto" and _cluster_has_gpus())
    groups: dict[str, WorkerGroup] = {}
    roles = RemoteRoles(reward=run.reward, kl_controller=kl_controller)
    roles.groups = groups
    try:
        model_path = policy_checkpoint(run)
        for pool, pool_roles in by_pool.items():
            groups[pool] = WorkerGroup(pool, config.resources.pools[pool], sorted(pool_roles), config.distributed, use_gpu=use_gpu, output_dir=str(run.output_dir))
        for group in groups.values():
            group.start(config, model_path)
    except BaseException:
        roles.close()
        raise
    actor_group, rollout_group = groups[config.resources.actor], groups[config.resources.pool_of("rollout")]
    if rollout_group is not actor_group:
        open_weight_channel(actor_group, rollout_group)
    tp = config.rollout.vllm.tensor_parallel_size if config.rollout.engine == "vllm" else 1
    roles.actor, roles.rollout = RemoteActor(actor_group, run), RemoteRollout(rollout_group, run.tokenizer, tp)
    roles.bucket_bytes = config.sync.bucket_mb * 2**20
    roles.ref = RemoteRef(groups[config.resources.pool_of("ref")]) if "ref" in hosted_roles(config) else None
    roles.critic = RemoteCritic(groups[config.resources.pool_of("critic")]) if "critic" in hosted_roles(config) else None
    return roles


def open_weight_channel(actor_group: WorkerGroup, rollout_group: WorkerGroup) -> None:
    """Build the broadcast group of actor rank 0 and every rollout worker (all join at once)."""
    (host, port), = actor_group.call("rendezvous_address", ranks=[0])
    size, timeout = 1 + rollout_group.world_size, actor_group.dist.timeout_s
    calls = [
        actor_group.submit("open_weight_channel", host, port, 0, size, timeout, ranks=[0]),
        rollout_group.submit_per_rank("open_weight_channel", [(host, port, 1 + rank, size, timeout) for rank in range(rollout_group.world_size)]),
    ]
    wait_calls(calls, actor_group.dist.startup_timeout_s)


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


def _cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


