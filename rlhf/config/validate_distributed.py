"""Validation of the distributed sections: backends, pools, and batch sizes that must split
evenly over a worker group's data-parallel ranks."""

from __future__ import annotations

from collections.abc import Iterable

from rlhf.config.schema import RecipeConfig

ROLES = ("actor", "rollout", "ref", "critic", "reward_model")
"""The roles that `resources.<role>` places on a pool."""


def pool_size(cfg: RecipeConfig, pool: str) -> int:
    """Workers in `pool` (1 for the local backend)."""
    if cfg.distributed.backend != "ray":
        return 1
    spec = cfg.resources.pools[pool]
    return spec.nodes * spec.devices_per_node


def distributed_errors(cfg: RecipeConfig, uses_critic: bool) -> Iterable[str]:
    """Every inconsistent distributed setting of `cfg` (values out of range included)."""
    dist, resources = cfg.distributed, cfg.resources
    if dist.backend not in ("local", "ray"):
        return  # reported with the other fixed choices
    for key in ("timeout_s", "startup_timeout_s"):
        if getattr(dist, key) <= 0:
            yield f"distributed.{key}: must be > 0 (got {getattr(dist, key)})"
    if cfg.sync.bucket_mb < 1:
        yield f"sync.bucket_mb: must be >= 1 (got {cfg.sync.bucket_mb})"
    yield from _pool_errors(cfg)
    if any(resources.pool_of(role) not in resources.pools for role in ROLES):
        return
    yield from _layout_errors(cfg, uses_critic)


def _pool_errors(cfg: RecipeConfig) -> Iterable[str]:
    resources = cfg.resources
    if not resources.pools:
        yield "resources.pools: must name at least one pool"
    for name, pool in resources.pools.items():
        for key in ("nodes", "devices_per_node", "cpus_per_worker"):
            if getattr(pool, key) < 1:
                yield f"resources.pools.{name}.{key}: must be >= 1 (got {getattr(pool, key)})"
    for role in ROLES:
        pool = resources.pool_of(role)
        if pool not in resources.pools:
            yield f"resources.{role}: no pool named {pool!r} in resources.pools (have: {', '.join(resources.pools) or 'none'})"


def _layout_errors(cfg: RecipeConfig, uses_critic: bool) -> Iterable[str]:
    """Batch sizes that do not split over the ranks, and layouts the backend cannot run."""
    resources, ray = cfg.resources, cfg.distributed.backend == "ray"
    if any(getattr(p, k) < 1 for p in resources.pools.values() for k in ("nodes", "devices_per_node")):
        return
    actor_ranks = pool_size(cfg, resources.actor)
    if cfg.actor.mini_batch_size % actor_ranks:
        yield f"actor.mini_batch_size ({cfg.actor.mini_batch_size}) must split evenly over the actor's {actor_ranks} workers"
    if uses_critic and cfg.critic.mini_batch_size % pool_size(cfg, resources.pool_of('critic')):
        yield f"critic.mini_batch_size ({cfg.critic.mini_batch_size}) must split evenly over the critic's {pool_size(cfg, resources.pool_of('critic'))} workers"
    if ray and cfg.ref.anchor.every + cfg.ref.anchor.ema > 0 and resources.pool_of('ref') != resources.actor:
        yield "ref.anchor: the dynamic anchor copies the actor's weights into the reference in-process; put resources.ref in the actor's pool"
