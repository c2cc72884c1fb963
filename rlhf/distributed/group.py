"""A worker group: N Ray actors of :class:`RoleWorker`, one per device of a resource pool,
placed by a placement group, with calls that never hang.

Every call waits at most `distributed.timeout_s`. The first rank to fail stops the wait: a
worker that died (killed, out of memory, its node lost) or raised becomes a
:class:`WorkerGroupError` naming the pool, the roles, the rank, the method, the cause and the
run's last checkpoint. The other ranks may then be stuck in a collective with the dead one;
:meth:`WorkerGroup.shutdown` kills them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

from rlhf.config.distributed_schema import DistributedConfig, PoolConfig
from rlhf.distributed.errors import WorkerGroupError, last_checkpoint
from rlhf.distributed.worker import RoleWorker

FORWARDED_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "DS_", "VLLM_", "NCCL_", "GLOO_", "RAY_AUTH_MODE", "PYTHONHASHSEED")
"""Environment variables of the controller that the workers get too (offline mode, engine settings)."""


class WorkerGroup:
    """The workers of pool `name`; `roles` are the model roles they host."""

    def __init__(self, name: str, pool: PoolConfig, roles: Sequence[str], dist: DistributedConfig, *, use_gpu: bool, output_dir: str):
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.name, self.roles, self.dist, self.output_dir = name, sorted(roles), dist, output_dir
        self.world_size = pool.nodes * pool.devices_per_node
        bundle = {"CPU": pool.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
        self.placement = placement_group([dict(bundle) for _ in range(self.world_size)], strategy="PACK")
        self._wait_for_placement(bundle)
        env = {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENV_PREFIXES)}
        env["OMP_NUM_THREADS"] = str(pool.cpus_per_worker)
        remote_class = ray.remote(RoleWorker)
        self.workers = [
            remote_class.options(
                num_cpus=pool.cpus_per_worker, num_gpus=1 if use_gpu else 0, runtime_env={"env_vars": env},
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=rank),
            ).remote(name, rank, self.world_size, self.roles, pool.cpus_per_worker)
            for rank in range(self.world_size)
        ]

    def start(self, config, model_path: str) -> list[dict]:
        """Rendezvous, join the process group, load the model and build the roles on every rank."""
        (address, port), = self.call("rendezvous_address", ranks=[0], timeout_s=self.dist.startup_timeout_s)
        return self.call("setup", config, model_path, self.output_dir, address, port, timeout_s=self.dist.startup_timeout_s)

    @property
    def description(self) -> str:
        return f"worker group {self.name!r} ({'+'.join(self.roles)}, {self.world_size} rank{'s' if self.world_size > 1 else ''})"

    def submit(self, method: str, *args: Any, ranks: Sequence[int] | None = None) -> Call:
        """Start `method(*args)` on `ranks` (default all) without waiting."""
        ranks = list(range(self.world_size)) if ranks is None else list(ranks)
        return Call(self, method, [getattr(self.workers[rank], method).remote(*args) for rank in ranks], ranks)

    def submit_per_rank(self, method: str, per_rank_args: Sequence[tuple]) -> Call:
        """Start `method(*per_rank_args[r])` on each rank r without waiting."""
        refs = [getattr(worker, method).remote(*args) for worker, args in zip(self.workers, per_rank_args)]
        return Call(self, method, refs, list(range(self.world_size)))

    def call(self, method: str, *args: Any, ranks: Sequence[int] | None = None, timeout_s: float | None = None) -> list[Any]:
        """`method(*args)` on `ranks` (default all), results in rank order."""
        return wait_calls([self.submit(method, *args, ranks=ranks)], timeout_s or self.dist.timeout_s)[0]

    def call_per_rank(self, method: str, per_rank_args: Sequence[tuple], timeout_s: float | None = None) -> list[Any]:
        """`method(*per_rank_args[r])` on each rank r, results in rank order."""
        return wait_calls([self.submit_per_rank(method, per_rank_args)], timeout_s or self.dist.timeout_s)[0]

    def failure(self, rank: int, method: str, what: str, cause: str) -> str:
        return f"{self.description}: rank {rank} {what} in {method}(): {cause}. The run stops. Last checkpoint: {last_checkpoint(self.output_dir)}"

    def _wait_for_placement(self, bundle: dict) -> None:
        import ray

        ready, _ = ray.wait([self.placement.ready()], timeout=self.dist.placement_timeout_s)
        if not ready:
            raise WorkerGroupError(
                f"resources.pools.{self.name}: the Ray cluster did not grant {self.world_size} × {bundle} within "
                f"{self.dist.placement_timeout_s:g} s (distributed.placement_timeout_s); `ray status` shows what it has"
            )

    def shutdown(self) -> None:
        """Kill the workers (also ones stuck in a collective) and free the placement group."""
        import ray
        from ray.util.placement_group import remove_placement_group

        try:
            self.call("close", timeout_s=30)
        except WorkerGroupError:
            pass
        for worker in self.workers:
            ray.kill(worker)
        remove_placement_group(self.placement)


@dataclass
class Call:
    """Calls of one method in flight on some ranks of a group."""

    group: WorkerGroup
    method: str
    refs: list
    ranks: list[int]


def wait_calls(calls: Sequence[Call], timeout_s: float) -> list[list[Any]]:
    """The results of every call (per call, in rank order), or a WorkerGroupError at the first
    failure of any rank of any group, or when `timeout_s` runs out. Calls that depend on each
    other (the two ends of a broadcast) are waited on together, so a dead receiver is reported
    at once rather than after the sender's collective times out."""
    import ray

    pending = {ref: (index, rank) for index, call in enumerate(calls) for ref, rank in zip(call.refs, call.ranks)}
    results: dict[tuple[int, int], Any] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            index, _ = next(iter(pending.values()))
            call = calls[index]
            late = sorted(rank for i, rank in pending.values() if i == index)
            raise WorkerGroupError(
                f"{call.group.description}: rank{'s' if len(late) > 1 else ''} {', '.join(map(str, late))} did not finish {call.method}() "
                f"within {timeout_s:g} s (distributed.timeout_s); a worker hangs or a collective waits for a dead peer. "
                f"Last checkpoint: {last_checkpoint(call.group.output_dir)}"
            )
        index, rank = pending.pop(ready[0])
        call = calls[index]
        try:
            results[index, rank] = ray.get(ready[0])
        except ray.exceptions.RayActorError as error:
            raise WorkerGroupError(call.group.failure(rank, call.method, "died", _first_line(error))) from None
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            raise WorkerGroupError(call.group.failure(rank, call.method, "raised", f"{type(cause).__name__}: {_first_line(cause)}")) from None
    return [[results[index, rank] for rank in call.ranks] for index, call in enumerate(calls)]


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
