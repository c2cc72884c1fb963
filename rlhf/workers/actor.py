"""The actor: log-probabilities of responses and the PPO-style policy update.

Notation: B sequences in the RL batch, R response tokens, V vocabulary size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algorithms.agreement import logprob_gap
from rlhf.algorithms.kl import kl_estimate
from rlhf.algorithms.losses import aggregate, get_policy_loss
from rlhf.algorithms.off_policy import OffPolicyBounds, mismatch_kl, off_policy_weights, weight_stats
from rlhf.data.batch import Batch, action_mask
from rlhf.data.padding import map_micro_batches
from rlhf.dispatch import SPLIT, SPLIT_EXACT, dispatch
from rlhf.engines.base import TrainingEngine
from rlhf.models.lora import merged_named_weights
from rlhf.workers.forward import response_logprobs
from rlhf.workers.updates import agreement, run_updates


@dataclass(frozen=True)
class PolicyLossConfig:
    """Plain numbers the update needs (taken from `actor.*` and `algorithm.kl.*`)."""

    ppo_epochs: int = 1
    mini_batch_size: int = 256
    micro_batch_size: int = 64
    max_tokens: int = 0
    """Token budget of a micro-batch (`train.max_tokens_per_micro_batch`; 0: rows only)."""
    clip_low: float = 0.2
    clip_high: float = 0.2
    dual_clip: float | None = None
    policy_loss: str = "ppo"
    loss_agg: str = "token-mean"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0
    kl_kind: str = "k3"
    norm_length: int | None = None
    """Constant divisor of seq-mean-token-sum-norm (Dr. GRPO): the generation budget."""
    off_policy: str = "none"
    """`actor.off_policy.correction`, applied here when the update is its own old-logprob pass
    (one epoch, one mini-batch); otherwise the controller sets `off_policy_weights`."""
    off_policy_bounds: OffPolicyBounds = OffPolicyBounds()


class ActorWorker:
    """Owns the policy's training engine."""

    def __init__(self, engine: TrainingEngine, loss: PolicyLossConfig, *, temperature: float, seed: int):
        self.engine = engine
        self.loss = loss
        self.policy_loss = get_policy_loss(loss.policy_loss)
        self.temperature = temperature
        self.shuffle_generator = torch.Generator().manual_seed(seed)

    @dispatch(SPLIT)
    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 log-probabilities of `response_ids` under the current policy, in eval
        mode (dropout, e.g. LoRA's, would make them random); length-sorted, trimmed
        micro-batches (:func:`rlhf.data.padding.map_micro_batches`)."""
        module = self.engine.module

        def forward(micro: Batch) -> torch.Tensor:
            with self.engine.autocast():
                logprobs, _ = response_logprobs(module, micro, self.temperature)
            return logprobs.cpu()

        was_training = module.training
        module.eval()
        try:
            return map_micro_batches(batch, self.loss.micro_batch_size, forward, self.loss.max_tokens, agreement(self.engine, self.loss.max_tokens))
        finally:
            module.train(was_training)

    @dispatch(SPLIT_EXACT, weight="shard_weight")
    def update_policy(self, batch: Batch, kl_coef: float | None = None) -> dict[str, float]:
        """`ppo_epochs` passes of shuffled mini-batches, one optimiser step each
        (see :func:`rlhf.workers.updates.run_updates`).

        Needs `advantages` (and `ref_logprobs` when the KL coefficient is > 0) in `batch`;
        `off_policy_weights [B, R]`, when set, multiply each token's policy loss.
        `kl_coef` overrides the configured coefficient (an adaptive KL controller's current
        value). Without `old_logprobs` the update is strictly on-policy (one epoch, one
        mini-batch): the detached logprobs of its own forward serve as the old ones.
        """
        coef = self.loss.kl_coef if kl_coef is None else kl_coef
        metrics = run_updates(
            self.engine, batch, lambda micro, weight: self._accumulate_micro_batch(micro, weight, coef),
            epochs=self.loss.ppo_epochs, mini_batch_size=self.loss.mini_batch_size, micro_batch_size=self.loss.micro_batch_size,
            loss_agg=self.loss.loss_agg, generator=self.shuffle_generator, max_tokens=self.loss.max_tokens,
        )
        return {f"actor/{key}": value for key, value in metrics.items()}

    def _accumulate_micro_batch(self, micro: Batch, weight: float, kl_coef: float) -> dict[str, torch.Tensor]:
        device = next(self.engine.module.parameters()).device
        mask = action_mask(micro).to(device).float()
        # micro-batches are trimmed: seq-mean-token-sum-norm divides by the batch's width R
        norm_length = self.loss.norm_length or micro.meta.get("response_width")
        agg = dict(mode=self.loss.loss_agg, norm_length=norm_length)
        with self.engine.autocast():
            logprobs, token_entropy = response_logprobs(self.engine.module, micro, self.temperature, entropy_grad=self.loss.entropy_coef > 0)
        old_logprobs = micro["old_logprobs"].to(device) if "old_logprobs" in micro else logprobs.detach()
        weights, off_stats = self._off_policy_weights(micro, old_logprobs, mask)
        pg_loss, stats = self.policy_loss(
            logprobs, old_logprobs, micro["advantages"].to(device), mask,
            clip_low=self.loss.clip_low, clip_high=self.loss.clip_high, dual_clip=self.loss.dual_clip, agg=self.loss.loss_agg, norm_length=norm_length,
            weights=weights,
        )
        stats.update(off_stats)
        entropy = aggregate(token_entropy if self.loss.entropy_coef > 0 else token_entropy.detach(), mask, **agg)
        loss = pg_loss - self.loss.entropy_coef * entropy
        stats.update(pg_loss=pg_loss.detach(), entropy=entropy.detach())
        if "rollout_logprobs" in micro and "old_logprobs" not in micro:
            # no old-logprob pass: the rollout engine's gap is measured against this forward
            behaviour = micro["rollout_logprobs"].to(device)
            stats["rollout_logprob_diff"] = logprob_gap(behaviour, logprobs.detach(), mask)[0]
            stats["rollout_kl_k3"] = mismatch_kl(logprobs.detach(), behaviour, mask)
        if kl_coef > 0:
            kl = aggregate(kl_estimate(logprobs, micro["ref_logprobs"].to(device), self.loss.kl_kind), mask, **agg)
            loss = loss + kl_coef * kl
            stats["kl"] = kl.detach()
        self.engine.backward(loss * weight)
        return stats

    def _off_policy_weights(self, micro: Batch, old_logprobs: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor | None, dict]:
        """The correction's per-token weights: the controller's (`off_policy_weights`), or, in
        an update that is its own old-logprob pass, computed here from this forward's detached
        logprobs (the same π_old) with their statistics as `off_policy/*`."""
        if "off_policy_weights" in micro:
            return micro["off_policy_weights"].to(mask.device), {}
        if self.loss.off_policy == "none":
            return None, {}
        behaviour = micro["rollout_logprobs"].to(mask.device)
        weights = off_policy_weights(self.loss.off_policy, old_logprobs, behaviour, mask, self.loss.off_policy_bounds)
        return weights, {f"off_policy/{key}": value for key, value in weight_stats(weights, mask).items()}

    def shard_weight(self, shard: Batch) -> float:
        """What this rank's loss averages over: its valid response tokens for token-mean
        aggregation, else its sequences (the ranks' metrics are averaged with these weights,
        so the loss of the whole batch comes out as one process computes it)."""
        return float(action_mask(shard).sum()) if self.loss.loss_agg == "token-mean" else float(len(shard))

    @property
    def description(self) -> str:
        """The training engine, for messages."""
        return type(self.engine).__name__

    def named_weights(self):
        """Full weights of the policy under the base model's names (LoRA adapters merged into
        them), for the rollout engine and the dynamic anchor."""
        return merged_named_weights(self.engine.module, self.engine.named_weights())

