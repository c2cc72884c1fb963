"""A worker group: N Ray actors of :class:`RoleWorker`, one per device of a resource pool,
placed on the pool's nodes, with calls that never hang.

Placement: a pool of `nodes` × `devices_per_node` gets one placement-group bundle per node,
each holding that node's `devices_per_node` devices, spread over distinct nodes
(``STRICT_SPREAD``; one node: ``STRICT_PACK``); ranks k·d .. k·d + d − 1 run on node k.

Every call waits at most `distributed.timeout_s`. The first rank to fail stops the wait: a
worker that died (killed, out of memory, its node lost) or raised becomes a
:class:`WorkerGroupError` naming the pool, the roles, the rank, the method, the cause and the
run's last checkpoint. A call that runs out of time is diagnosed before the error is raised
(:mod:`rlhf.distributed.diagnosis`): the message names the ranks that stopped answering, not
the ones merely waiting for them in a collective. A group that failed is killed at once by
:meth:`WorkerGroup.shutdown` (its ranks may be stuck in a collective with the dead one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlhf.config.distributed_schema import DistributedConfig, PoolConfig
from rlhf.distributed.diagnosis import describe_late_ranks
from rlhf.distributed.errors import WorkerGroupError, last_checkpoint
from rlhf.distributed.worker import RoleWorker

FORWARDED_ENV_PREFIXES = ("HF_", "TRANSFORMERS_", "TOKENIZERS_", "DS_", "VLLM_", "NCCL_", "GLOO_", "RAY_AUTH_MODE", "PYTHONHASHSEED", "RLHF_")
"""Environment variables of the controller that the workers get too (offline mode, engine settings)."""

CLOSE_TIMEOUT_S = 10.0
"""How long a healthy group's workers get to release their engines before they are killed."""

FAILURE_GRACE_S = 2.0
"""After one rank fails, how long the other ranks' answers are still collected (see wait_calls)."""


class WorkerGroup:
    """The workers of pool `name`; `roles` are the roles they host."""

    def __init__(self, name: str, pool: PoolConfig, roles: Sequence[str], dist: DistributedConfig, *, use_gpu: bool, output_dir: str,
                 threads: int = 1):
        """`threads`: calls a worker may run at once (an asynchronous run's rollout workers
        serve the controller's calls beside their stream's long polls)."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.name, self.roles, self.dist, self.output_dir = name, sorted(roles), dist, output_dir
        self.nodes, self.per_node = pool.nodes, pool.devices_per_node
        self.world_size = pool.nodes * pool.devices_per_node
        self.broken = False
        self.pids: list[int] = []
        self.node_ids: list[str] = []
        self.placement = self._place(pool, use_gpu)
        env = {key: value for key, value in os.environ.items() if key.startswith(FORWARDED_ENV_PREFIXES)}
        env["OMP_NUM_THREADS"] = str(pool.cpus_per_worker)
        remote_class = ray.remote(RoleWorker)
        self.workers = [
            remote_class.options(
                num_cpus=pool.cpus_per_worker, num_gpus=1 if use_gpu else 0, runtime_env={"env_vars": env}, max_concurrency=threads,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.placement, placement_group_bundle_index=rank // self.per_node),
            ).remote(name, rank, self.world_size, self.roles, pool.cpus_per_worker)
            for rank in range(self.world_size)
        ]

    def _place(self, pool: PoolConfig, use_gpu: bool):
        """One bundle per node with that node's devices, on `pool.nodes` distinct nodes."""
        import ray
        from ray.util.placement_group import placement_group

        per_node = {"CPU": pool.cpus_per_worker * pool.devices_per_node, **({"GPU": pool.devices_per_node} if use_gpu else {})}
        strategy = "STRICT_SPREAD" if pool.nodes > 1 else "STRICT_PACK"
        placement = placement_group([dict(per_node) for _ in range(pool.nodes)], strategy=strategy)
        ready, _ = ray.wait([placement.ready()], timeout=self.dist.placement_timeout_s)
        if not ready:
            from ray.util.placement_group import remove_placement_group

            remove_placement_group(placement)
            raise WorkerGroupError(
                f"resources.pools.{self.name}: the Ray cluster did not grant {pool.nodes} node(s) with {per_node} each "
                f"(devices_per_node={pool.devices_per_node} workers on each of nodes={pool.nodes} distinct nodes) within "
                f"{self.dist.placement_timeout_s:g} s (distributed.placement_timeout_s); `ray status` shows what it has"
            )
        return placement

    def start(self, config, model_path: str, reward_models: dict) -> list[dict]:
        """Rendezvous, join the process group, load the model and build the roles on every rank;
        returns each rank's setup report (pid, device, dispatch tables)."""
        (address, port), = self.call_method("rendezvous_address", ranks=[0], timeout_s=self.dist.startup_timeout_s)
        reports = self.call_method("setup", config, model_path, address, port, reward_models, timeout_s=self.dist.startup_timeout_s)
        self.pids = [report["pid"] for report in reports]
        self.node_ids = [report["node_id"] for report in reports]
        return reports

    @property
    def description(self) -> str:
        return f"worker group {self.name!r} ({'+'.join(self.roles)}, {self.world_size} rank{'s' if self.world_size > 1 else ''})"

    def submit(self, method: str, *args: Any, ranks: Sequence[int] | None = None, label: str | None = None) -> Call:
        """Start the worker method `method(*args)` on `ranks` (default all) without waiting;
        `label` names the call in errors (a role method: 'actor.update_policy')."""
        ranks = list(range(self.world_size)) if ranks is None else list(ranks)
        return Call(self, label or method, [getattr(self.workers[rank], method).remote(*args) for rank in ranks], ranks)

    def submit_per_rank(self, method: str, per_rank_args: Sequence[tuple], label: str | None = None) -> Call:
        """Start `method(*per_rank_args[r])` on each rank r without waiting."""
        refs = [getattr(worker, method).remote(*args) for worker, args in zip(self.workers, per_rank_args)]
        return Call(self, label or method, refs, list(range(self.world_size)))

    def call_method(self, method: str, *args: Any, ranks: Sequence[int] | None = None, timeout_s: float | None = None,
                    label: str | None = None) -> list[Any]:
        """The worker method `method(*args)` on `ranks` (default all), results in rank order."""
        return wait_calls([self.submit(method, *args, ranks=ranks, label=label)], timeout_s or self.dist.timeout_s)[0]

    def call_per_rank(self, method: str, per_rank_args: Sequence[tuple], timeout_s: float | None = None, label: str | None = None) -> list[Any]:
        """`method(*per_rank_args[r])` on each rank r, results in rank order."""
        return wait_calls([self.submit_per_rank(method, per_rank_args, label)], timeout_s or self.dist.timeout_s)[0]

    def failure(self, rank: int, method: str, what: str, cause: str) -> str:
        self.broken = True
        return f"{self.description}: rank {rank} {what} in {method}(): {cause}. The run stops. Last checkpoint: {last_checkpoint(self.output_dir)}"

    def shutdown(self) -> None:
        """Let the workers release their engines (a healthy group, briefly), then kill them and
        free the placement group. A broken group is killed at once: its ranks may wait in a
        collective for a dead or stopped peer and would never answer."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if not self.broken:
            try:
                wait_calls([self.submit("call", "process", "close", (), {}, label="process.close")], CLOSE_TIMEOUT_S)
            except WorkerGroupError:
                pass
        for worker in self.workers:
            ray.kill(worker)
        remove_placement_group(self.placement)


@dataclass
class Call:
    """Calls of one worker method in flight on some ranks of a group."""

    group: WorkerGroup
    method: str
    """What errors call it: the worker method, or the role method it runs ('actor.update_policy')."""
    refs: list
    ranks: list[int]


def wait_calls(calls: Sequence[Call], timeout_s: float) -> list[list[Any]]:
    """The results of every call (per call, in rank order), or a WorkerGroupError when a rank
    of any group fails or `timeout_s` runs out. Calls that depend on each other (the two ends
    of a broadcast) are waited on together, so a dead receiver is reported at once rather than
    after the sender's collective times out.

    A failure is not reported on the spot: for `FAILURE_GRACE_S` the other ranks' answers are
    still collected, because a rank that dies often makes its peers raise too (a connection
    reset in a collective), and the error must name the rank that died, not one of them."""
    import ray

    pending = {ref: (index, rank) for index, call in enumerate(calls) for ref, rank in zip(call.refs, call.ranks)}
    results: dict[tuple[int, int], Any] = {}
    failures: list[tuple[str, Call, int, str]] = []
    deadline = time.monotonic() + timeout_s
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            if failures:
                break
            raise _timed_out(calls, pending, timeout_s)
        index, rank = pending.pop(ready[0])
        call = calls[index]
        try:
            results[index, rank] = ray.get(ready[0])
        except ray.exceptions.RayActorError as error:
            failures.append(("died", call, rank, _first_line(error)))
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if getattr(error, "cause", None) is not None else error
            failures.append(("raised", call, rank, f"{type(cause).__name__}: {_first_line(cause)}"))
        if failures and len(failures) == 1:
            deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
    if failures:
        raise _failed(failures)
    return [[results[index, rank] for rank in call.ranks] for index, call in enumerate(calls)]


def _failed(failures: list[tuple[str, Call, int, str]]) -> WorkerGroupError:
    """The error of failed ranks: a rank that died first (its peers' errors follow from it),
    then the others, briefly."""
    ordered = sorted(failures, key=lambda failure: failure[0] != "died")
    what, call, rank, cause = ordered[0]
    message = call.group.failure(rank, call.method, what, cause)
    for other_what, other_call, other_rank, other_cause in ordered[1:]:
        other_call.group.broken = True
        message += f" (also rank {other_rank} of {other_call.group.description} {other_what} in {other_call.method}(): {other_cause[:200]})"
    return WorkerGroupError(message)


def _timed_out(calls: Sequence[Call], pending: dict, timeout_s: float) -> WorkerGroupError:
    """The error of calls still pending at the deadline: for each group, which ranks stopped
    answering and which wait (see :func:`rlhf.distributed.diagnosis.describe_late_ranks`)."""
    parts = []
    for index, call in enumerate(calls):
        late = sorted(rank for i, rank in pending.values() if i == index)
        if not late:
            continue
        call.group.broken = True
        what = describe_late_ranks(call.group, late, call.method)
        parts.append(f"{call.group.description}: {what}")
    group = calls[0].group
    return WorkerGroupError(
        f"{'; '.join(parts)}; no answer within {timeout_s:g} s (distributed.timeout_s). The run stops. "
        f"Last checkpoint: {last_checkpoint(group.output_dir)}"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
