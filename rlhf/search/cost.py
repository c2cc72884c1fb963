"""What a search strategy spent on one problem, in the units its scaling curve is drawn in.

Strategies compare fairly only at equal compute (Snell et al. 2024, "Scaling LLM Test-Time
Compute Optimally can be More Effective than Scaling Model Parameters", §3: the generation
budget), so every strategy returns a :class:`SearchCost`; the scaling curve plots accuracy
against `samples` and against `generated_tokens` per problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SearchCost:
    """Compute spent on one problem (or, summed with `+`, on several)."""

    samples: int = 0
    """Sequences sampled from the policy: whole responses for the sample-then-select
    strategies, single reasoning steps for the step beam."""
    generated_tokens: int = 0
    """Policy tokens generated, every sample counted, the discarded ones included."""
    scored: int = 0
    """Sequences the reward model scored: responses, or partial solutions for the step beam
    (0 for plain majority voting)."""
    rounds: int = 0
    """Sequential generation calls, each waiting for the previous one's scores: 1 for the
    sample-then-select strategies, the number of expansions for the step beam (latency)."""

    def __add__(self, other: SearchCost) -> SearchCost:
        return SearchCost(self.samples + other.samples, self.generated_tokens + other.generated_tokens,
                          self.scored + other.scored, self.rounds + other.rounds)

    @classmethod
    def of_samples(cls, token_counts: Sequence[int] | torch.Tensor, scored: bool) -> SearchCost:
        """The cost of n whole responses sampled in one call (of which `token_counts` [n] are
        the lengths in generated tokens), each scored by the reward model when `scored`."""
        counts = token_counts.tolist() if isinstance(token_counts, torch.Tensor) else list(token_counts)
        negative = next((i for i, count in enumerate(counts) if count < 0), None)
        if negative is not None:
            raise ValueError(f"token_counts[{negative}] is {counts[negative]}: a response cannot cost fewer than 0 tokens")
        return cls(samples=len(counts), generated_tokens=int(sum(counts)), scored=len(counts) if scored else 0, rounds=1)
