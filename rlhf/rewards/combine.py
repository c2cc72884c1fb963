"""The weighted sum of several reward sources (the controller's reward step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardSource


@dataclass
class WeightedSource:
    name: str
    weight: float
    source: RewardSource


class RewardCombiner:
    """Scores a batch with every source; total = Σ weight · score."""

    def __init__(self, sources: list[WeightedSource]):
        self.sources = sources

    def score(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """Returns (total scores [B] float32, each source's scores [B] by name, metrics with
        `reward/<name>/mean` and each source's extras)."""
        total = torch.zeros(len(batch), dtype=torch.float32)
        per_source: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        for item in self.sources:
            output = item.source.score(batch)
            if output.scores.shape != (len(batch),):
                raise ValueError(f"reward source {item.name!r} returned shape {tuple(output.scores.shape)}, expected ({len(batch)},)")
            per_source[item.name] = output.scores.float()
            total += item.weight * per_source[item.name]
            metrics[f"reward/{item.name}/mean"] = output.scores.float().mean().item()
            metrics.update({f"reward/{item.name}/{k}": v for k, v in output.metrics.items()})
        return total, per_source, metrics
