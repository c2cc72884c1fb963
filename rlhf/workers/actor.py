"""The actor: log-probabilities of responses and the PPO-style policy update.

Notation: B sequences in the RL batch, R response tokens, V vocabulary size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from rlhf.algorithms.kl import kl_estimate
from rlhf.algorithms.logprobs import entropy_from_logits, logprobs_from_logits
from rlhf.algorithms.losses import aggregate, ppo_policy_loss
from rlhf.data.batch import Batch
from rlhf.engines.base import TrainingEngine
from rlhf.workers.forward import response_logits


@dataclass(frozen=True)
class PolicyLossConfig:
    """Plain numbers the update needs (taken from `actor.*` and `algorithm.kl.*`)."""

    ppo_epochs: int = 1
    mini_batch_size: int = 256
    micro_batch_size: int = 64
    clip_low: float = 0.2
    clip_high: float = 0.2
    loss_agg: str = "token-mean"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    norm_length: int | None = None
    """Constant divisor of seq-mean-token-sum-norm (Dr. GRPO): the generation budget."""


class ActorWorker:
    """Owns the policy's training engine."""

    def __init__(self, engine: TrainingEngine, loss: PolicyLossConfig, *, temperature: float, seed: int):
        self.engine = engine
        self.loss = loss
        self.temperature = temperature
        self.shuffle_generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 log-probabilities of `response_ids` under the current policy."""
        parts = []
        for micro in batch.split(self.loss.micro_batch_size):
            with self.engine.autocast():
                logits = response_logits(self.engine.module, micro, self.temperature)
            parts.append(logprobs_from_logits(logits, micro["response_ids"].to(logits.device)).cpu())
        return torch.cat(parts)

    def is_single_on_policy_update(self, batch_size: int) -> bool:
        """True when the update takes exactly one optimiser step over the whole batch: then
        old logprobs equal the update's own logprobs and need no separate forward pass."""
        return self.loss.ppo_epochs == 1 and self.loss.mini_batch_size >= batch_size

    def update_policy(self, batch: Batch) -> dict[str, float]:
        """`ppo_epochs` passes of shuffled mini-batches, one optimiser step each.

        Needs `advantages` (and `ref_logprobs` when kl_coef > 0) in `batch`. Without
        `old_logprobs` the update is strictly on-policy (one epoch, one mini-batch): the
        detached logprobs of its own forward serve as the old ones, saving a forward pass.
        Gradients of a mini-batch's micro-batches add up to exactly the gradient of the
        mini-batch loss: each micro loss is weighted by its share of the mini-batch's tokens
        (or sequences, for sequence-mean aggregations).
        """
        self.engine.module.train()
        history: dict[str, list[torch.Tensor]] = defaultdict(list)
        for _ in range(self.loss.ppo_epochs):
            order = torch.randperm(len(batch), generator=self.shuffle_generator)
            for mini in batch.select(order).split(self.loss.mini_batch_size):
                for micro in mini.split(self.loss.micro_batch_size):
                    stats = self._accumulate_micro_batch(micro, _micro_weight(micro, mini, self.loss.loss_agg))
                    for key, value in stats.items():
                        history[key].append(value)
                history["grad_norm"].append(self.engine.step())
        metrics = {f"actor/{k}": torch.stack(v).float().mean().item() for k, v in history.items()}
        metrics["actor/lr"] = self.engine.lr
        return metrics

    def _accumulate_micro_batch(self, micro: Batch, weight: float) -> dict[str, torch.Tensor]:
        device = next(self.engine.module.parameters()).device
        mask = micro["response_mask"].to(device).float()
        with self.engine.autocast():
            logits = response_logits(self.engine.module, micro, self.temperature)
        logprobs = logprobs_from_logits(logits, micro["response_ids"].to(device))
        old_logprobs = micro["old_logprobs"].to(device) if "old_logprobs" in micro else logprobs.detach()
        pg_loss, stats = ppo_policy_loss(
            logprobs, old_logprobs, micro["advantages"].to(device), mask,
            clip_low=self.loss.clip_low, clip_high=self.loss.clip_high, agg=self.loss.loss_agg, norm_length=self.loss.norm_length,
        )
        with torch.set_grad_enabled(self.loss.entropy_coef > 0):
            entropy = aggregate(entropy_from_logits(logits), mask, self.loss.loss_agg, self.loss.norm_length)
        loss = pg_loss - self.loss.entropy_coef * entropy
        stats.update(pg_loss=pg_loss.detach(), entropy=entropy.detach())
        if self.loss.kl_coef > 0:
            kl = aggregate(kl_estimate(logprobs, micro["ref_logprobs"].to(device), self.loss.kl_kind), mask, self.loss.loss_agg, self.loss.norm_length)
            loss = loss + self.loss.kl_coef * kl
            stats["kl"] = kl.detach()
        self.engine.backward(loss * weight)
        return stats

    def named_weights(self):
        """Full weights of the policy, for the rollout engine."""
        return self.engine.named_weights()


def _micro_weight(micro: Batch, mini: Batch, agg: str) -> float:
    if agg == "token-mean":
        return float(micro["response_mask"].sum()) / max(1.0, float(mini["response_mask"].sum()))
    return len(micro) / len(mini)
