"""Throughput as veRL reports it (`perf/throughput`), so numbers compare across frameworks."""

from __future__ import annotations

from rlhf.config.schema import RecipeConfig
from rlhf.config.validate_distributed import pool_size
from rlhf.controller.roles import model_roles


def device_count(config: RecipeConfig) -> int:
    """Devices the run occupies: 1 with the local backend; with Ray, the workers of every
    pool that hosts a role (veRL divides by all GPUs of its resource pools; with the usual
    colocated layout that is the actor pool's world size)."""
    if config.distributed.backend != "ray":
        return 1
    pools = {config.resources.pool_of(role) for role in model_roles(config)}
    return sum(pool_size(config, pool) for pool in pools)


def throughput(total_tokens: int, step_seconds: float, devices: int) -> float:
    """Tokens per second per device: (prompt + response tokens of the step's batch) / step
    seconds / devices, the definition of veRL's `perf/throughput` (`compute_throughout_metrics`:
    the batch's token count over step time × number of GPUs)."""
    return total_tokens / step_seconds / devices
