"""The synchronous, single-turn rollout source: steps (1)-(3) of the loop as one call.

Each step takes the next `data.train_batch_size` prompts of the stream, generates `rollout.n`
responses to each and scores them, with DAPO's dynamic sampling and ReMax's greedy baseline
when the recipe asks for them. Samples of one prompt are consecutive (`repeat_interleave`) and
share a `group_index`.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from rlhf.algorithms.groups import group_ids, group_mean_std
from rlhf.config.schema import DynamicSamplingConfig
from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.source import PromptGroups, Sampled, score


class SyncRolloutSource:
    """Turns prompt rows from `stream` into scored RL batches (see the module docstring).

    Args:
        stream: batches of `data.train_batch_size` prompt rows.
        tokenize: prompt rows -> a left-padded prompt Batch.
        n: responses per prompt.
        sampling: how responses are sampled.
        dynamic: DAPO's dynamic sampling settings.
        with_baseline: also score one greedy response per prompt (ReMax's baseline).
        generate: `(engine, prompts, sampling) -> (responses, metrics)` in place of the
            engine's own generate (`rollout.search`: :class:`rlhf.search.training.SearchedResponses`).
    """

    def __init__(self, stream: PromptStream, tokenize: Callable[[list[dict]], Batch], *, n: int, sampling: SamplingParams,
                 dynamic: DynamicSamplingConfig, with_baseline: bool,
                 generate: Callable[[Any, Batch, SamplingParams], tuple[Batch, dict[str, float]]] | None = None):
        self.prompts, self.tokenize, self.n, self.sampling = PromptGroups(stream), tokenize, n, sampling
        self.generate = generate
        self.dynamic, self.with_baseline = dynamic, with_baseline
        self.last: Sampled | None = None

    def next_batch(self, roles, timer) -> Sampled:
        """One round, or with `data.dynamic_sampling.enabled` as many rounds as it takes
        (at most 1 + max_extra_rounds) to gather data.train_batch_size informative groups."""
        if not self.dynamic.enabled:
            batch, metrics = self.round(roles, timer)
            self.last = Sampled(batch, batch["scores"], metrics)
        else:
            self.last = self._dynamic(roles, timer, self.dynamic.max_extra_rounds)
        return self.last

    def after_step(self, roles, updated: bool) -> int:
        """Nothing to do: it generates with `roles.rollout`, which the loop syncs."""
        return 0

    def close(self) -> None:
        """Nothing to stop."""

    def state_dict(self) -> dict[str, Any]:
        """The stream's position and the next group id."""
        return self.prompts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)

    def round(self, roles, timer) -> tuple[Batch, dict[str, float]]:
        """Generate n responses for the next prompt batch and score them."""
        rows, groups = self.prompts.next()
        prompts = self.tokenize(rows).set("group_index", groups)
        with timer.phase("generate"):
            if self.generate is None:
                batch, search_metrics = roles.rollout.generate(prompts.repeat_interleave(self.n), self.sampling), {}
            else:
                batch, search_metrics = self.generate(roles.rollout, prompts.repeat_interleave(self.n), self.sampling)
        with timer.phase("reward"):
            metrics = {**score(roles.reward, batch), **search_metrics}
        if self.with_baseline:
            with timer.phase("baseline"):
                greedy = SamplingParams(max_new_tokens=self.sampling.max_new_tokens, greedy=True)
                baseline, _, _ = roles.reward.score(roles.rollout.generate(prompts, greedy))
                batch.set("baseline_scores", baseline.repeat_interleave(self.n))
                metrics["remax/baseline_mean"] = baseline.mean().item()
        return batch, metrics

    def _dynamic(self, roles, timer, max_extra_rounds: int) -> Sampled:
        """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2): keep groups whose rewards differ."""
        wanted, rounds = self.prompts.batch_size, DynamicRounds(self.n)
        while rounds.kept_groups < wanted and rounds.count <= max_extra_rounds:
            rounds.add(*self.round(roles, timer))
        return Sampled(*rounds.result(wanted))


class DynamicRounds:
    """The rounds of DAPO's dynamic sampling: each scored batch's informative groups are kept,
    the others set aside; the result is `groups` groups, kept ones first, filled up with
    set-aside ones (the batch keeps its size), with the `dynamic_sampling/*` metrics and the
    rounds' reward metrics averaged. Shared by the synchronous and asynchronous sources."""

    def __init__(self, n: int):
        self.n = n
        self.kept: list[Batch] = []
        self.set_aside: list[Batch] = []
        self.scores: list[torch.Tensor] = []
        self.metrics: list[dict[str, float]] = []

    @property
    def count(self) -> int:
        return len(self.metrics)

    @property
    def kept_groups(self) -> int:
        return sum(len(batch) for batch in self.kept) // self.n

    def add(self, batch: Batch, metrics: dict[str, float]) -> None:
        informative = informative_samples(batch["scores"], batch["group_index"])
        self.kept.append(batch.select(informative.nonzero().squeeze(-1)))
        self.set_aside.append(batch.select((~informative).nonzero().squeeze(-1)))
        self.scores.append(batch["scores"])
        self.metrics.append(metrics)

    def result(self, groups: int) -> tuple[Batch, torch.Tensor, dict[str, float]]:
        """(the batch, every score of every round, metrics)."""
        batch = Batch.concat(self.kept + self.set_aside).select(range(groups * self.n))  # kept groups first
        metrics = {key: sum(m[key] for m in self.metrics) / self.count for key in self.metrics[0]}
        metrics.update({
            "dynamic_sampling/rounds": float(self.count),
            "dynamic_sampling/dropped_groups": float(sum(len(b) for b in self.set_aside) // self.n),
            "dynamic_sampling/filled_groups": float(max(0, groups - self.kept_groups)),
        })
        return batch, torch.cat(self.scores), metrics


def informative_samples(scores: torch.Tensor, group_index) -> torch.Tensor:
    """[B] bool: True for samples whose group's scores are not all equal (a group with equal
    rewards has zero group-relative advantage and only dilutes the batch)."""
    ids, num_groups = group_ids(group_index)
    _, std, _ = group_mean_std(scores.float(), ids, num_groups)
    return std > 1e-6
