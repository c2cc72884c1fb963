"""Recipe sections of the distributed backend: where the roles run and how long anything may take.

With ``distributed.backend: local`` (the default) every role lives in the controller's process
and these sections only size the plan. With ``ray`` each resource pool becomes a group of Ray
actors, one per device, and the roles named to a pool share its processes (colocated: the
actor, its rollout engine and the reference model on the same devices, HybridFlow-style).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PoolConfig:
    """One resource pool: `nodes` × `devices_per_node` workers, one device each."""

    nodes: int = 1
    """Machines the pool spans."""
    devices_per_node: int = 1
    """Workers per machine: GPUs on a GPU cluster, processes on a CPU-only one."""
    cpus_per_worker: int = 1
    """CPU cores reserved for each worker (its torch threads)."""


@dataclass
class ResourcesConfig:
    """The resource pools and which pool each role runs on."""

    pools: dict[str, PoolConfig] = field(default_factory=lambda: {"default": PoolConfig()})
    """Named pools, e.g. {trainer: {nodes: 1, devices_per_node: 8}}."""
    actor: str = "default"
    """Pool of the actor."""
    rollout: str = ""
    """Pool of the rollout engines ('': the actor's, colocated: weights move in-process;
    another pool: trainer rank 0 broadcasts them to it after each update)."""
    ref: str = ""
    """Pool of the reference model ('': the actor's, sharing its processes)."""
    critic: str = ""
    """Pool of the critic ('': the actor's, sharing its processes)."""
    reward_model: str = ""
    """Pool of the reward models of orm/prm sources ('': the actor's, sharing its processes)."""

    def pool_of(self, role: str) -> str:
        """The pool `role` ('actor', 'rollout', 'ref', 'critic' or 'reward_model') runs on;
        ArCHer's 'utterance_critic' runs beside the actor."""
        return self.actor if role in ("actor", "utterance_critic") else getattr(self, role) or self.actor


@dataclass
class DistributedConfig:
    """The execution backend of the roles."""

    backend: str = "local"
    """'local' (every role in this process) or 'ray' (worker groups of Ray actors)."""
    address: str = "auto"
    """Ray cluster: 'auto' (a running cluster if there is one, else a new local one), 'local'
    (always a new local one) or an address such as 'ray://head:10001' or 'head:6379'."""
    timeout_s: float = 1800.0
    """Longest wait for any remote call or collective before the run stops with an error
    naming the role and the rank."""
    startup_timeout_s: float = 900.0
    """Longest wait for a worker group to start (placement, model loading)."""
    placement_timeout_s: float | None = 300.0
    """Longest wait for the cluster to grant a pool's devices (null: wait forever)."""
