"""What an evaluation observed per prompt, and the metrics computed from it (no engines here).

Notation: N prompts, n samples per prompt (n = 0: greedy responses only).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from rlhf.eval.passk import maj_at_k, mean_pass_at_k
from rlhf.eval.step_beam import BeamLine, BeamOutcomes, beam_metrics
from rlhf.eval.voting import Ballots
from rlhf.search.at_k import mean_search_at_k

UNLABELLED = "unlabelled"
"""The name of the data source of rows without a `data_source` field."""


@dataclass
class SearchSamples:
    """What a reward model said of each sample, for the search strategies judged on them."""

    strategies: tuple[str, ...]
    """The strategies to report (:data:`rlhf.search.at_k.SAMPLE_STRATEGIES`)."""
    answers: list[list[str | None]]
    """N lists of n final-answer keys (:func:`rlhf.eval.voting.answer_key`)."""
    scores: torch.Tensor
    """[N, n] float32: the reward model's score of each sample."""
    weights: torch.Tensor
    """[N, n] float32: each sample's vote weight (>= 0)."""

    def select(self, indices: list[int]) -> SearchSamples:
        index = torch.tensor(indices, dtype=torch.long)
        return SearchSamples(self.strategies, [self.answers[i] for i in indices], self.scores[index], self.weights[index])

    @staticmethod
    def concat(parts: list[SearchSamples]) -> SearchSamples:
        return SearchSamples(parts[0].strategies, [a for p in parts for a in p.answers], torch.cat([p.scores for p in parts]),
                             torch.cat([p.weights for p in parts]))


@dataclass
class EvalOutcomes:
    """Per-prompt results of one evaluation."""

    greedy_correct: torch.Tensor
    """[N] bool: the verifier accepts the greedy response."""
    greedy_reward: torch.Tensor
    """[N] float32: total reward of the greedy response."""
    greedy_length: torch.Tensor
    """[N] float32: greedy response length in tokens."""
    sample_correct: torch.Tensor
    """[N, n] bool: the verifier accepts each sampled response."""
    sample_length: torch.Tensor
    """[N, n] float32: sampled response lengths in tokens."""
    ballots: list[Ballots] = field(default_factory=list)
    """N: each prompt's samples grouped by final answer (empty when n = 0)."""
    sources: list[str] = field(default_factory=list)
    """N: each prompt's data source (its row's `data_source`, else UNLABELLED)."""
    search: SearchSamples | None = None
    """Reward-model scores of the samples, when search strategies are evaluated."""
    beams: BeamLine = field(default_factory=dict)
    """What the step beam found for each prompt at each of its settings (empty: not evaluated)."""

    def __post_init__(self) -> None:
        size = len(self.greedy_correct)
        assert self.sample_correct.shape[0] == size and self.sample_length.shape == self.sample_correct.shape, (size, tuple(self.sample_correct.shape))
        assert len(self.sources) == size and len(self.ballots) in (0, size), (size, len(self.sources), len(self.ballots))

    @property
    def num_samples(self) -> int:
        return self.sample_correct.shape[1]

    def select(self, indices: list[int]) -> EvalOutcomes:
        """The outcomes of the prompts at `indices`."""
        index = torch.tensor(indices, dtype=torch.long)
        return EvalOutcomes(
            self.greedy_correct[index], self.greedy_reward[index], self.greedy_length[index], self.sample_correct[index],
            self.sample_length[index], [self.ballots[i] for i in indices] if self.ballots else [], [self.sources[i] for i in indices],
            self.search.select(indices) if self.search else None, {settings: beam.select(indices) for settings, beam in self.beams.items()},
        )

    def by_source(self) -> dict[str, EvalOutcomes]:
        """The outcomes of each data source, in order of first appearance."""
        groups: dict[str, list[int]] = {}
        for i, source in enumerate(self.sources):
            groups.setdefault(source, []).append(i)
        return {source: self.select(indices) for source, indices in groups.items()}

    @staticmethod
    def concat(parts: list[EvalOutcomes]) -> EvalOutcomes:
        return EvalOutcomes(
            torch.cat([p.greedy_correct for p in parts]), torch.cat([p.greedy_reward for p in parts]), torch.cat([p.greedy_length for p in parts]),
            torch.cat([p.sample_correct for p in parts]), torch.cat([p.sample_length for p in parts]),
            [b for p in parts for b in p.ballots], [s for p in parts for s in p.sources],
            SearchSamples.concat([p.search for p in parts]) if parts[0].search else None,
            {settings: BeamOutcomes.concat([p.beams[settings] for p in parts]) for settings in parts[0].beams},
        )


def mean_maj_at_k(ballots: list[Ballots], k: int) -> float:
    """maj@k (:func:`rlhf.eval.passk.maj_at_k`) averaged over prompts."""
    return sum(_maj_at_k(b, k) for b in ballots) / len(ballots)


@functools.lru_cache(maxsize=1 << 16)
def _maj_at_k(ballots: Ballots, k: int) -> float:
    # the per-source metrics and the scaling curve ask again for the same prompts (and many
    # prompts share a vote pattern, e.g. all n samples agreeing)
    return maj_at_k(ballots.class_sizes, ballots.class_correct, ballots.abstentions, k)


def outcome_metrics(outcomes: EvalOutcomes, ks: tuple[int, ...], prefix: str = "eval/") -> dict[str, float]:
    """`accuracy` (greedy), `reward` (greedy), `response_length` (greedy); with the step beam
    `step_beam`, `step_beam_tokens`, `step_beam_steps`, `step_beam_finished` of its widest
    setting and the same `@W` for each width W (:func:`rlhf.eval.step_beam.beam_metrics`); with samples
    `sampled_response_length`, `pass@k` and `maj@k` for each k of `ks` (each k <= n), and
    `<strategy>@k` for each search strategy the samples were scored for (e.g. `best_of_n@4`)."""
    metrics = {
        f"{prefix}accuracy": outcomes.greedy_correct.float().mean().item(),
        f"{prefix}reward": outcomes.greedy_reward.mean().item(),
        f"{prefix}response_length": outcomes.greedy_length.mean().item(),
    }
    if outcomes.beams:
        metrics |= beam_metrics(outcomes.beams, prefix)
    if outcomes.num_samples == 0:
        return metrics
    metrics[f"{prefix}sampled_response_length"] = outcomes.sample_length.mean().item()
    for k in ks:
        metrics[f"{prefix}pass@{k}"] = mean_pass_at_k(outcomes.sample_correct, k)
        metrics[f"{prefix}maj@{k}"] = mean_maj_at_k(outcomes.ballots, k)
        metrics.update({f"{prefix}{name}@{k}": value for name, value in search_at_k(outcomes, k).items()})
    return metrics


def search_at_k(outcomes: EvalOutcomes, k: int) -> dict[str, float]:
    """{strategy: accuracy at k samples} of the search strategies the samples were scored for."""
    search = outcomes.search
    if search is None:
        return {}
    return {name: mean_search_at_k(name, search.answers, search.scores, search.weights, outcomes.sample_correct, k)
            for name in search.strategies}


def eval_metrics(outcomes: EvalOutcomes, ks: tuple[int, ...]) -> dict[str, float]:
    """`eval/<metric>` over all prompts and, when the prompts come from several data sources,
    `eval/<source>/<metric>` for each source (see :func:`outcome_metrics`)."""
    metrics = outcome_metrics(outcomes, ks)
    groups = outcomes.by_source()
    if len(groups) > 1:
        for source, part in groups.items():
            metrics.update(outcome_metrics(part, ks, prefix=f"eval/{source}/"))
    return metrics
