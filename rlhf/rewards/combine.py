"""The weighted sum of several reward sources (the controller's reward step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RewardConfig
from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardSource
from rlhf.rewards.registry import build_reward_source


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

    def close(self) -> None:
        """Release what the sources hold (worker processes of verifiers, served models)."""
        for item in self.sources:
            close = getattr(item.source, "close", None)
            if callable(close):
                close()


def build_combiner(reward: RewardConfig, extra_fields: Collection[str] | None = None) -> RewardCombiner:
    """Every source of the recipe's `reward` section, weighted (see :func:`build_source`)."""
    sources = [build_source(reward, index, extra_fields) for index in range(len(reward.sources))]
    return RewardCombiner(sources)


def build_source(reward: RewardConfig, index: int, extra_fields: Collection[str] | None = None) -> WeightedSource:
    """Source `reward.sources.<index>`; a source that cannot be built is a ConfigError naming that key.

    `extra_fields` are the dataset's row fields besides prompt and ground truth, when known
    (a function source checks that the fields its function requires exist).
    """
    source = reward.sources[index]
    options = dict(source.kwargs)
    if source.type == "function":
        options = {"path": source.path, "function": source.name, "batched": source.batched, "kwargs": options,
                   "on_error": reward.on_error, "extra_fields": extra_fields}
    try:
        built = build_reward_source(source.type, options)
    except KeyError as error:
        raise ConfigError(f"reward.sources.{index}: {error.args[0]}") from None
    except (ConfigError, TypeError, ValueError) as error:
        raise ConfigError(f"reward.sources.{index}: {error}") from None
    return WeightedSource(source.name or source.type, source.weight, built)
