"""One rank of a worker group: a Ray actor process hosting the roles of its pool.

The roles named to the same pool share this process (colocation, see
:class:`rlhf.workers.colocated.Colocated`). The worker knows no role's methods: the controller
calls :meth:`RoleWorker.call` with a role name and a method name, after reading at start-up how
each method is dispatched (:func:`rlhf.dispatch.dispatch_table`). How a call is spread over the
ranks is the caller's business (:mod:`rlhf.distributed.proxy`).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.data.batch import Batch
from rlhf.dispatch import dispatch_table
from rlhf.distributed.process_group import COLLECTIVE_TIMEOUT_MARGIN_S, free_port, join_process_group, node_ip
from rlhf.distributed.weight_channel import WeightChannel
from rlhf.workers.colocated import Colocated
from rlhf.workers.reward_model import RewardModelSpec
from rlhf.workers.state import seed_everything

LOCAL_META = ("tokenizer",)
"""Batch metadata that stays in its process (a tokenizer would be pickled with every call)."""


def strip_local_meta(value: Any) -> Any:
    """`value` without the process-local metadata of a Batch (other values unchanged)."""
    if isinstance(value, Batch) and any(key in value.meta for key in LOCAL_META):
        return Batch(value.tensors, value.non_tensors, {k: v for k, v in value.meta.items() if k not in LOCAL_META})
    return value


class RoleWorker:
    """Rank `rank` of `world_size` in pool `pool`, hosting `roles` (a subset of actor,
    rollout, ref, critic, reward_model)."""

    def __init__(self, pool: str, rank: int, world_size: int, roles: list[str], num_threads: int):
        self.pool, self.rank, self.world_size, self.roles = pool, rank, world_size, sorted(roles)
        torch.set_num_threads(num_threads)
        self.colocated: Colocated | None = None
        self.channel: WeightChannel | None = None
        self.stream = None  # an asynchronous run's RolloutService (rollout pool of its own)

    def rendezvous_address(self) -> tuple[str, int]:
        """(IP, free port) of this node: rank 0's answer is the group's rendezvous."""
        return node_ip(), free_port()

    def node_id(self) -> str:
        """The Ray node this worker runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def pid(self) -> int:
        return os.getpid()

    def check_shared_dir(self, directory: str, token: str, write: bool) -> str | None:
        """Write `token` into a marker file under `directory` (write=True), or read it back:
        returns what this worker sees there (None: no such file), so the controller can tell
        whether every node sees the same output directory."""
        marker = Path(directory) / f".shared-check-{token}"
        if write:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(token)
            return token
        return marker.read_text() if marker.exists() else None

    def setup(self, config: RecipeConfig, model_path: str, master_addr: str, master_port: int,
              reward_models: dict[str, RewardModelSpec]) -> dict:
        """Join the group's process group, load the policy and build the hosted roles; returns
        how every hosted method is dispatched, by role ('process' for the colocated ones)."""
        from rlhf.models.load import load_causal_lm, load_tokenizer
        from rlhf.workers.build import build_colocated

        # the controller's deadline comes first: a hung peer is diagnosed, not raised as a timeout by its partners
        timeout_s = config.distributed.timeout_s + COLLECTIVE_TIMEOUT_MARGIN_S
        backend = join_process_group(self.rank, self.world_size, master_addr, master_port, timeout_s)
        # one seed per rank: ranks sample different responses from their shards of prompts
        seed_everything(config.trainer.seed + self.rank)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        trust = config.model.trust_remote_code
        tokenizer = load_tokenizer(model_path, trust)
        model = load_causal_lm(model_path, device, trust) if set(self.roles) & {"actor", "rollout", "ref", "critic"} else None
        self.colocated = build_colocated(
            config, self.roles, model=model, tokenizer=tokenizer, model_path=model_path, device=device, rank=self.rank,
            dp_size=self.world_size, reward_models=reward_models, tag=f"{self.pool}_rank{self.rank}",
        )
        tables = {role: dispatch_table(type(self.colocated.role(role))) for role in [*self.roles, "process"]}
        return {"pid": os.getpid(), "node_id": self.node_id(), "backend": backend, "device": str(device), "dispatch": tables}

    def call(self, role: str, method: str, args: tuple, kwargs: dict, weight: str | None = None) -> Any:
        """`role.method(*args, **kwargs)`; with `weight`, (the answer, role.weight(args[0]))."""
        target = self.colocated.role(role)
        streaming = role == "rollout" and self.stream is not None and method not in ("wake", "sleep")
        # while the stream runs: between its generate calls, with the newest weights posted
        with self.stream.holding() if streaming else contextlib.nullcontext():
            result = strip_local_meta(getattr(target, method)(*args, **kwargs))
        return (result, getattr(target, weight)(args[0])) if weight else result

    # weights to a rollout pool of its own (see rlhf.distributed.weight_channel)
    def open_weight_channel(self, host: str, port: int, rank: int, size: int, timeout_s: float) -> None:
        """Join the broadcast group: actor rank 0 as its rank 0, rollout worker r as 1 + r."""
        self.channel = WeightChannel(host, port, rank, size, timeout_s)

    def send_weights(self, bucket_bytes: int) -> int:
        """Every actor rank takes part in the ZeRO-3 gathers; rank 0 broadcasts the buckets."""
        weights = self.colocated.actor.named_weights()
        if self.rank != 0:
            for _ in weights:
                pass
            return 0
        return self.channel.send(weights, bucket_bytes)

    def receive_weights(self) -> int:
        """Load one sync's broadcast into this worker's rollout engine; returns the bytes."""
        return self.colocated.rollout.update_weights(self.channel.receive())

    # the stream of an asynchronous run on a rollout pool of its own (see rlhf.distributed.async_rollout)
    def start_rollout_service(self, spec, version: int) -> None:
        """Serve the stream in a thread with this worker's rollout engine, which holds `version`."""
        from rlhf.distributed.rollout_service import RolloutService

        self.stream = RolloutService(self.colocated.rollout, spec, version)

    def rollout_service(self, method: str, *args: Any) -> Any:
        """`method(*args)` of the service (submit, want, ask_snapshot, post, seconds, stop)."""
        result = getattr(self.stream, method)(*args)
        if method == "stop":
            self.stream = None
        return result

    def poll_rollout_service(self, timeout: float) -> list:
        """The service's messages, waiting up to `timeout` s for one."""
        return self.stream.receive(timeout)

    def receive_weights_for(self, version: int) -> int:
        """One broadcast of the actor's weights into the service's mailbox as `version`."""
        return self.stream.post(self.channel.receive(), version)
