"""The Ray backend: one worker group per resource pool that hosts a role, and proxies for the
roles, so the controller's loop reads the same as with everything in one process.

`start_worker_groups` takes plain arguments (the recipe, the policy checkpoint, the run
directory, which roles run on which pool, the reward models to serve) and returns the role
proxies plus :class:`RayProcesses`, which does across groups what
:class:`rlhf.workers.colocated.Colocated` does in one process: the weight sync, the dynamic
anchor, checkpoints and shutdown.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlhf.config.distributed_schema import DistributedConfig
from rlhf.config.schema import RecipeConfig
from rlhf.distributed.errors import WorkerGroupError
from rlhf.distributed.group import WorkerGroup, wait_calls
from rlhf.distributed.process_group import COLLECTIVE_TIMEOUT_MARGIN_S
from rlhf.distributed.proxy import RoleProxy


@dataclass
class RayProcesses:
    """What concerns several roles or every process of a Ray run."""

    groups: dict[str, WorkerGroup]
    actor_pool: str
    rollout_pool: str
    process: dict[str, RoleProxy] = field(default_factory=dict)
    """Each group's colocated-roles proxy (`Colocated`'s methods), by pool."""
    bucket_bytes: int = 256 * 2**20
    """`sync.bucket_mb` in bytes."""
    streaming: bool = False
    """An asynchronous run's rollout services are running: weights go to their mailboxes, by
    version (:mod:`rlhf.distributed.async_rollout`), never straight into their engines."""

    def sync_weights(self) -> int:
        """Push the actor's weights into every rollout engine; returns the bytes loaded, summed
        over the engines. Colocated: each actor rank loads its own engine in-process. A rollout
        pool of its own: actor rank 0 broadcasts (see :mod:`rlhf.distributed.weight_channel`)."""
        if self.streaming:
            return 0
        if self.rollout_pool == self.actor_pool:
            return self.process[self.actor_pool].sync_weights()
        actor, rollout = self.groups[self.actor_pool], self.groups[self.rollout_pool]
        calls = [actor.submit("send_weights", self.bucket_bytes, label="actor.send_weights"),
                 rollout.submit("receive_weights", label="rollout.receive_weights")]
        _, received = wait_calls(calls, actor.dist.timeout_s)
        return sum(received)

    def follow_policy(self, ema: float) -> None:
        self.process[self.actor_pool].follow_policy(ema)

    def save_state(self, directory) -> None:
        """Every rank of every group writes its part (see :meth:`checkpoint_parts`)."""
        self._on_every_group("save_state", str(directory))

    def load_state(self, directory) -> None:
        self._on_every_group("load_state", str(directory))

    def checkpoint_parts(self) -> list[str]:
        """The files every complete checkpoint holds: one process file per rank of each group
        (a rank that wrote elsewhere, e.g. on a disk of its own node, leaves one missing)."""
        return [f"process_{name}_rank{rank}.pt" for name, group in self.groups.items() for rank in range(group.world_size)]

    def _on_every_group(self, method: str, *args: Any) -> None:
        calls = [group.submit("call", "process", method, args, {}, label=f"process.{method}") for group in self.groups.values()]
        wait_calls(calls, self.groups[self.actor_pool].dist.timeout_s)

    def close(self) -> None:
        for group in self.groups.values():
            group.shutdown()
        self.groups = {}


@dataclass
class RayRoles:
    """Proxies of the model roles (None for a role the run does not have) and the processes."""

    actor: RoleProxy
    rollout: RoleProxy
    ref: RoleProxy | None
    critic: RoleProxy | None
    reward_model: RoleProxy | None
    utterance_critic: RoleProxy | None
    processes: RayProcesses


def start_ray(dist: DistributedConfig) -> None:
    """Connect to the cluster `distributed.address` names, or start a local one."""
    import ray

    if ray.is_initialized():
        return
    options = dict(include_dashboard=False, log_to_driver=True)
    if dist.address == "local":
        _start_local_cluster(options)
    elif dist.address == "auto":
        try:
            ray.init(address="auto", **options)
        except ConnectionError:
            _start_local_cluster(options)
    else:
        ray.init(address=dist.address, **options)


_WATCHDOGS: list = []
"""The watchdogs of the clusters this process started (held, so that they are not collected as
children gone out of reach while they run)."""


def _start_local_cluster(options: dict) -> None:
    """A Ray cluster on this machine for this run, with a watchdog that removes its processes
    if the run is killed outright (:mod:`rlhf.distributed.reaper`)."""
    import ray

    from rlhf.distributed.reaper import start_reaper

    _WATCHDOGS.append(start_reaper(str(Path(ray.__file__).parent)))  # before ray.init: a kill during start-up is covered too
    ray.init(address="local", **options)  # without an address Ray joins any cluster it finds running on this machine


def start_worker_groups(config: RecipeConfig, *, model_path: str, output_dir: Path, tokenizer, pools: dict[str, set[str]],
                        reward_models: dict, ranks_per_engine: int) -> RayRoles:
    """One worker group per pool of `pools` (pool -> the roles it hosts), started from the
    policy checkpoint `model_path`; every worker must see `output_dir` (checked)."""
    start_ray(config.distributed)
    use_gpu = config.trainer.device == "cuda" or (config.trainer.device == "auto" and _cluster_has_gpus())
    processes = RayProcesses({}, config.resources.actor, config.resources.pool_of("rollout"), bucket_bytes=config.sync.bucket_mb * 2**20)
    try:
        tables = {}
        for pool, pool_roles in pools.items():
            serves_stream = config.rollout.mode == "async" and pool == processes.rollout_pool != processes.actor_pool
            processes.groups[pool] = WorkerGroup(pool, config.resources.pools[pool], sorted(pool_roles), config.distributed,
                                                 use_gpu=use_gpu, output_dir=str(output_dir), threads=4 if serves_stream else 1)
        check_shared_output_dir(list(processes.groups.values()), output_dir)
        for pool, group in processes.groups.items():
            tables[pool] = group.start(config, model_path, reward_models if "reward_model" in group.roles else {})[0]["dispatch"]
            processes.process[pool] = RoleProxy(group, "process", tables[pool]["process"])
        if processes.rollout_pool != processes.actor_pool:
            open_weight_channel(processes.groups[processes.actor_pool], processes.groups[processes.rollout_pool])
    except BaseException:
        processes.close()
        raise

    def proxy(role: str, **options) -> RoleProxy | None:
        pool = config.resources.pool_of(role)
        if role not in pools.get(pool, ()):
            return None
        return RoleProxy(processes.groups[pool], role, tables[pool][role], **options)

    return RayRoles(
        actor=proxy("actor"), rollout=proxy("rollout", restore_meta={"tokenizer": tokenizer}, ranks_per_engine=ranks_per_engine),
        ref=proxy("ref"), critic=proxy("critic"), reward_model=proxy("reward_model"), utterance_critic=proxy("utterance_critic"),
        processes=processes,
    )


def check_shared_output_dir(groups: list[WorkerGroup], output_dir: Path | str) -> None:
    """Every worker of every group must see the files this process writes in `output_dir`
    (checkpoints are written by every rank, into one directory): a marker written here is read
    back by each worker; a worker that does not find it stops the run, named."""
    token = uuid.uuid4().hex
    marker = Path(output_dir) / f".shared-check-{token}"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(token)
    try:
        blind = []
        for group in groups:
            seen = group.call_method("check_shared_dir", str(output_dir), token, False, timeout_s=group.dist.startup_timeout_s)
            blind += [(group, rank) for rank, text in enumerate(seen) if text != token]
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        where = ", ".join(f"rank {rank} of {group.description}" for group, rank in blind)
        raise WorkerGroupError(
            f"trainer.output_dir: {str(output_dir)!r} as the controller sees it is not visible to {where}: every rank writes its "
            "part of each checkpoint there, so it must be on a filesystem all nodes share (NFS, a cluster filesystem, or a "
            "mounted bucket), under the same path on every node"
        )


def open_weight_channel(actor_group: WorkerGroup, rollout_group: WorkerGroup) -> None:
    """Build the broadcast group of actor rank 0 and every rollout worker (all join at once)."""
    (host, port), = actor_group.call_method("rendezvous_address", ranks=[0])
    size, timeout = 1 + rollout_group.world_size, actor_group.dist.timeout_s + COLLECTIVE_TIMEOUT_MARGIN_S
    calls = [
        actor_group.submit("open_weight_channel", host, port, 0, size, timeout, ranks=[0]),
        rollout_group.submit_per_rank("open_weight_channel", [(host, port, 1 + rank, size, timeout) for rank in range(rollout_group.world_size)]),
    ]
    wait_calls(calls, actor_group.dist.startup_timeout_s)


class GroupScorer:
    """A reward source's scorer served by the `reward_model` group: the rows are split over its
    ranks (the same protocol as an in-process RewardModelWorker)."""

    def __init__(self, proxy: RoleProxy, name: str):
        self.proxy, self.name = proxy, name

    def sequence_scores(self, rows, positive_id=None, negative_id=None) -> torch.Tensor:
        if not rows:
            return torch.zeros(0)
        return self.proxy.sequence_scores([list(row) for row in rows], self.name, positive_id, negative_id)

    def position_probs(self, rows, positions, positive_id=None, negative_id=None) -> list[torch.Tensor]:
        if not rows:
            return []
        items = [(list(row), list(row_positions)) for row, row_positions in zip(rows, positions)]
        return self.proxy.position_probs(items, self.name, positive_id, negative_id)


def _cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0

