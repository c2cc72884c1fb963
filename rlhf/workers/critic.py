"""The critic: values of the states along each response, and their regression on the returns.

Notation: B sequences, R response tokens, K value-head outputs (1 for mse, bins for HL-Gauss).
Column t of a value tensor [B, R] is the value of the state before response token t, which is
what GAE (`rlhf.algorithms.advantages.gae`) expects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.algorithms.aggregation import explained_variance
from rlhf.algorithms.losses import hl_gauss_loss, hl_gauss_value, value_loss
from rlhf.data.batch import Batch, action_mask
from rlhf.data.padding import map_micro_batches
from rlhf.dispatch import SPLIT, SPLIT_EXACT, dispatch
from rlhf.engines.base import TrainingEngine
from rlhf.workers.forward import response_values
from rlhf.workers.updates import agreement, run_updates


@dataclass(frozen=True)
class ValueLossConfig:
    """Plain numbers the critic update needs (taken from `critic.*`)."""

    loss: str = "mse"
    """'mse' or 'hl_gauss'."""
    value_clip: float | None = 0.2
    ppo_epochs: int = 1
    mini_batch_size: int = 256
    micro_batch_size: int = 64
    max_tokens: int = 0
    """Token budget of a micro-batch (`train.max_tokens_per_micro_batch`; 0: rows only)."""
    v_min: float = -1.0
    v_max: float = 1.0
    sigma_ratio: float = 0.75
    """HL-Gauss target std as a multiple of the bin width."""

    def sigma(self, num_bins: int) -> float:
        return self.sigma_ratio * (self.v_max - self.v_min) / num_bins


class CriticWorker:
    """Owns the value model's training engine (a :class:`rlhf.models.value_model.ValueModel`)."""

    def __init__(self, engine: TrainingEngine, loss: ValueLossConfig, *, seed: int):
        self.engine = engine
        self.loss = loss
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)

    def _values_from_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Head outputs [B, R, K] -> scalar values [B, R]."""
        if self.loss.loss == "hl_gauss":
            return hl_gauss_value(outputs, self.loss.v_min, self.loss.v_max)
        return outputs.squeeze(-1)

    @dispatch(SPLIT)
    @torch.no_grad()
    def compute_values(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 values (0 on padding)."""
        self.engine.module.eval()

        def forward(micro: Batch) -> torch.Tensor:
            with self.engine.autocast():
                outputs = response_values(self.engine.module, micro)
            return (self._values_from_outputs(outputs).cpu() * micro["response_mask"]).float()

        return map_micro_batches(batch, self.loss.micro_batch_size, forward, self.loss.max_tokens, agreement(self.engine, self.loss.max_tokens))

    @dispatch(SPLIT_EXACT, weight="shard_weight")
    def update_critic(self, batch: Batch) -> dict[str, float]:
        """Regress the values on `returns` (needs `values` from before the update, for value
        clipping, and `returns` in `batch`). Metrics are prefixed `critic/`; `explained_var`
        is 1 − Var(returns − values) / Var(returns) of the pre-update values."""
        metrics = run_updates(
            self.engine, batch, self._accumulate_micro_batch,
            epochs=self.loss.ppo_epochs, mini_batch_size=self.loss.mini_batch_size, micro_batch_size=self.loss.micro_batch_size,
            loss_agg="token-mean", generator=self.shuffle_generator, max_tokens=self.loss.max_tokens,
        )
        metrics["explained_var"] = explained_variance(batch["values"], batch["returns"], action_mask(batch).float()).item()
        return {f"critic/{key}": value for key, value in metrics.items()}

    def shard_weight(self, shard: Batch) -> float:
        """The value loss is a token mean per mini-batch: ranks weigh alike per sequence."""
        return float(len(shard))

    def _accumulate_micro_batch(self, micro: Batch, weight: float) -> dict[str, torch.Tensor]:
        device = next(self.engine.module.parameters()).device
        mask = action_mask(micro).to(device).float()
        returns = micro["returns"].to(device)
        with self.engine.autocast():
            outputs = response_values(self.engine.module, micro)
        if self.loss.loss == "hl_gauss":
            sigma = self.loss.sigma(outputs.shape[-1])
            loss, stats = hl_gauss_loss(outputs, returns, mask, self.loss.v_min, self.loss.v_max, sigma=sigma)
        else:
            loss, stats = value_loss(outputs.squeeze(-1), micro["values"].to(device), returns, mask, clip=self.loss.value_clip)
        self.engine.backward(loss * weight)
        return {"value_loss": loss.detach(), **stats}

