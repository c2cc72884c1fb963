"""One rank of a worker group: a Ray actor process hosting the model roles of its pool.

The roles named to the same pool share this process (colocation): the actor's training
engine, the rollout engine that generates with the actor's weights, and the reference and
critic when they are in the pool. Every method here runs on one rank; how a call is spread
over the ranks is decided by the caller (:mod:`rlhf.distributed.group`,
:mod:`rlhf.distributed.dispatch`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.data.batch import Batch
from rlhf.distributed.dispatch import WEIGHT_KEY, shard_weight
from rlhf.distributed.process_group import free_port, join_process_group, node_ip
from rlhf.distributed.weight_channel import WeightChannel
from rlhf.rollout.base import SamplingParams
from rlhf.workers.state import load_models, save_models


class RoleWorker:
    """Rank `rank` of `world_size` in pool `pool`, hosting `roles` (a subset of actor,
    rollout, ref, critic)."""

    def __init__(self, pool: str, rank: int, world_size: int, roles: list[str], num_threads: int):
        self.pool, self.rank, self.world_size, self.roles = pool, rank, world_size, sorted(roles)
        torch.set_num_threads(num_threads)
        self.models = None
        self.channel: WeightChannel | None = None

    def rendezvous_address(self) -> tuple[str, int]:
        """(IP, free port) of this node: rank 0's answer is the group's rendezvous."""
        return node_ip(), free_port()

    def setup(self, config: RecipeConfig, model_path: str, output_dir: str, master_addr: str, master_port: int) -> dict:
        """Join the group's process group, load the policy and build the hosted roles."""
        from rlhf.controller.roles import build_models
        from rlhf.controller.setup import Run, seed_everything
        from rlhf.models.load import load_causal_lm, load_tokenizer

        backend = join_process_group(self.rank, self.world_size, master_addr, master_port, config.distributed.timeout_s)
        # one seed per rank: ranks sample different responses from their shards of prompts
        seed_everything(config.trainer.seed + self.rank)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        trust = config.model.trust_remote_code
        tokenizer = load_tokenizer(model_path, trust)
        model = load_causal_lm(model_path, device, trust)
        run = Run(config, Path(output_dir), device, tokenizer, model, None, None, [], [], model_path=model_path, rank=self.rank)
        self.models = build_models(run, self.roles, dp_size=self.world_size)
        return {"pid": os.getpid(), "backend": backend, "device": str(device)}

    def pid(self) -> int:
        return os.getpid()

    # rollout
    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        out = self.models.rollout.generate(prompts, sampling)
        out.meta.pop("tokenizer", None)  # the controller has its own; do not ship it back
        return out

    def sleep_rollout(self) -> None:
        self.models.rollout.sleep()

    def wake_rollout(self) -> None:
        self.models.rollout.wake()

    # actor
    def actor_logprobs(self, batch: Batch) -> torch.Tensor:
        return self.models.actor.compute_logprobs(batch)

    def update_policy(self, batch: Batch, kl_coef: float | None) -> dict[str, float]:
        metrics = self.models.actor.update_policy(batch, kl_coef=kl_coef)
        return {**metrics, WEIGHT_KEY: shard_weight(batch, self.models.actor.loss.loss_agg)}

    def actor_weights(self) -> dict[str, torch.Tensor] | None:
        """The actor's full weights (gathered under ZeRO-3: every rank must call), on rank 0."""
        weights = {name: tensor.clone() for name, tensor in self.models.actor.named_weights()}
        return weights if self.rank == 0 else None

    def sync_weights(self) -> int:
        """Actor → colocated rollout engine, in this process (ZeRO-3: bucket by bucket, a
        collective over the group)."""
        return self.models.sync_weights()

    def follow_policy(self, ema: float) -> None:
        self.models.follow_policy(ema)

    # weights to a rollout pool of its own (see rlhf.distributed.weight_channel)
    def open_weight_channel(self, host: str, port: int, rank: int, size: int, timeout_s: float) -> None:
        """Join the broadcast group: actor rank 0 as its rank 0, rollout worker r as 1 + r."""
        self.channel = WeightChannel(host, port, rank, size, timeout_s)

    def send_weights(self, bucket_bytes: int) -> int:
        """Every actor rank takes part in the ZeRO-3 gathers; rank 0 broadcasts the buckets."""
        weights = self.models.actor.named_weights()
        if self.rank != 0:
            for _ in weights:
                pass
            return 0
        return self.channel.send(weights, bucket_bytes)

    def receive_weights(self) -> int:
        """Load one sync's broadcast into this worker's rollout engine; returns the bytes."""
        return self.models.rollout.update_weights(self.channel.receive())

    # reference and critic
    def ref_logprobs(self, batch: Batch) -> torch.Tensor:
        return self.models.ref.compute_logprobs(batch)

    def critic_values(self, batch: Batch) -> torch.Tensor:
        return self.models.critic.compute_values(batch)

    def update_critic(self, batch: Batch) -> dict[str, float]:
        return {**self.models.critic.update_critic(batch), WEIGHT_KEY: float(len(batch))}

    def save_state(self, directory: str) -> None:
        save_models(self.models, Path(directory), f"{self.pool}_rank{self.rank}", writes_shared=self.rank == 0)

    def load_state(self, directory: str) -> None:
        load_models(self.models, Path(directory), f"{self.pool}_rank{self.rank}")

    def close(self) -> None:
        """Release what the roles hold outside Python's reach (a vLLM engine)."""
        rollout = getattr(self.models, "rollout", None)
        if rollout is not None and hasattr(rollout, "close"):
            rollout.close()
