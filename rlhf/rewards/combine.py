"""The weighted sum of several reward sources (the controller's reward step).

Outcome sources (verifiers, ORMs, functions) give one score per response, which sits on its
last token. Process sources (PRMs) give scores per reasoning step; following Gao et al. 2024
("On Designing Effective RL Reward at Training Time for LLM Reasoning", sec. 4), each
response's step scores are refined (`reward.process.refine`: none, clip, delta, clip_delta;
:mod:`rlhf.algorithms.refinement`), scaled by `reward.process.alpha` times the source's weight,
and placed on the last token of each step. Their sum over steps, the process return, is added
to the outcome score to make the sequence-level `scores` that GRPO, RLOO and other
sequence-level estimators read; token-level estimators (GAE, REINFORCE++) read the outcome
score at the last token plus the process rewards at the step ends. A process source's own
scalar (e.g. its smallest step score) is logged, never added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection

import torch

from rlhf.algorithms.refinement import place_step_rewards, refine
from rlhf.config.errors import ConfigError
from rlhf.config.schema import ProcessRewardConfig, RewardConfig
from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput, RewardSource
from rlhf.rewards.registry import MODEL_SOURCES, build_reward_source


@dataclass
class WeightedSource:
    name: str
    weight: float
    source: RewardSource


@dataclass
class RewardResult:
    """The combined reward of a batch of B responses with R response tokens."""

    scores: torch.Tensor
    """[B] float32: outcome scores + process returns (what sequence-level estimators read)."""
    outcome_scores: torch.Tensor
    """[B] float32: Σ weight · score over the outcome sources (placed on the last token)."""
    process_token_rewards: torch.Tensor | None = None
    """[B, R] float32: refined, weighted step rewards at the step ends; None without process sources."""
    per_source: dict[str, torch.Tensor] = field(default_factory=dict)
    """Each source's own scores [B] by name (unweighted)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """`reward/<name>/mean`, each source's extras, `reward/<name>/process_return_mean`."""


class RewardCombiner:
    """Scores a batch with every source: total = Σ_outcome weight · score + process returns."""

    def __init__(self, sources: list[WeightedSource], process: ProcessRewardConfig | None = None):
        self.sources = sources
        self.process = process or ProcessRewardConfig()

    def score(self, batch: Batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, float]]:
        """(total scores [B] float32, each source's scores [B] by name, metrics); see :meth:`evaluate`."""
        result = self.evaluate(batch)
        return result.scores, result.per_source, result.metrics

    def evaluate(self, batch: Batch) -> RewardResult:
        """Score `batch` with every source and combine (see the module docstring)."""
        outcome = torch.zeros(len(batch), dtype=torch.float32)
        process: torch.Tensor | None = None
        per_source: dict[str, torch.Tensor] = {}
        metrics: dict[str, float] = {}
        for item in self.sources:
            output = item.source.score(batch)
            if output.scores.shape != (len(batch),):
                raise ValueError(f"reward source {item.name!r} returned shape {tuple(output.scores.shape)}, expected ({len(batch)},)")
            per_source[item.name] = output.scores.float()
            metrics[f"reward/{item.name}/mean"] = output.scores.float().mean().item()
            metrics.update({f"reward/{item.name}/{k}": v for k, v in output.metrics.items()})
            if not output.is_process:
                outcome += item.weight * per_source[item.name]
                continue
            token_rewards = self.process_token_rewards(item, output, batch["response_mask"].shape[1])
            process = token_rewards if process is None else process + token_rewards
            metrics[f"reward/{item.name}/process_return_mean"] = token_rewards.sum(dim=-1).mean().item()
        total = outcome if process is None else outcome + process.sum(dim=-1)
        return RewardResult(total, outcome, process, per_source, metrics)

    def process_token_rewards(self, item: WeightedSource, output: RewardOutput, num_tokens: int) -> torch.Tensor:
        """[B, R]: alpha · weight · refine(step scores), each on the token where its step ends."""
        steps, ends = output.step_scores, output.step_ends
        if ends is None or len(steps) != len(output.scores) or len(ends) != len(steps):
            raise ValueError(f"process reward source {item.name!r} must return step_scores and step_ends for each of the {len(output.scores)} samples")
        scale = self.process.alpha * item.weight
        rewards = []
        for row_scores, row_ends in zip(steps, ends):
            if row_scores.shape != row_ends.shape or (len(row_ends) and not 0 <= int(row_ends.min()) <= int(row_ends.max()) < num_tokens):
                raise ValueError(f"process reward source {item.name!r}: step_ends must match step_scores and lie in [0, {num_tokens})")
            rewards.append(scale * refine(row_scores.float(), self.process.refine, self.process.eta))
        return place_step_rewards(rewards, ends, num_tokens)

    def in_process(self) -> RewardCombiner:
        """The sources that can score in this process now (a reward model served by a worker
        group scores only once the group is attached), with the same weights."""
        ready = [item for item in self.sources if getattr(item.source, "scorer", True) is not None]
        return RewardCombiner(ready, self.process)

    def model_specs(self) -> dict:
        """Each model-backed source's RewardModelSpec by source name (what the `reward_model`
        role must serve)."""
        return {item.name: item.source.spec for item in self.sources if hasattr(item.source, "spec")}

    def attach_scorers(self, scorer_for) -> None:
        """Give each model-backed source `scorer_for(name)`: its model served elsewhere."""
        for item in self.sources:
            if hasattr(item.source, "attach"):
                item.source.attach(scorer_for(item.name))

    def close(self) -> None:
        """Release what the sources hold (worker processes of verifiers, served models)."""
        for item in self.sources:
            close = getattr(item.source, "close", None)
            if callable(close):
                close()


def build_combiner(reward: RewardConfig, extra_fields: Collection[str] | None = None, *, load_models: bool = True) -> RewardCombiner:
    """Every source of the recipe's `reward` section, weighted (see :func:`build_source`)."""
    combiner = RewardCombiner([], reward.process)
    try:
        for index in range(len(reward.sources)):
            combiner.sources.append(build_source(reward, index, extra_fields, load_models=load_models))
    except BaseException:
        combiner.close()  # the sources built so far may hold worker processes
        raise
    return combiner


def build_source(reward: RewardConfig, index: int, extra_fields: Collection[str] | None = None, *, load_models: bool = True) -> WeightedSource:
    """Source `reward.sources.<index>`; a source that cannot be built is a ConfigError naming that key.

    `extra_fields` are the dataset's row fields besides prompt and ground truth, when known
    (a function source checks that the fields its function requires exist). With
    `load_models` False, reward-model sources leave their model to a worker group.
    """
    source = reward.sources[index]
    options = dict(source.kwargs)
    if source.type in MODEL_SOURCES:
        options["load_model"] = load_models
    if source.type == "function":
        options = {"path": source.path, "function": source.name, "batched": source.batched, "kwargs": options,
                   "on_error": reward.on_error, "extra_fields": extra_fields, "timeout_s": source.timeout_s}
    try:
        built = build_reward_source(source.type, options)
    except KeyError as error:
        raise ConfigError(f"reward.sources.{index}: {error.args[0]}") from None
    except (ConfigError, TypeError, ValueError) as error:
        raise ConfigError(f"reward.sources.{index}: {error}") from None
    return WeightedSource(source.name or source.type, source.weight, built)
