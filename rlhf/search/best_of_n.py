"""Best-of-N: sample N responses, keep the one the reward model scores highest.

The verifier-reranking baseline of Cobbe et al. 2021 ("Training Verifiers to Solve Math Word
Problems", with an ORM) and Lightman et al. 2023 ("Let's Verify Step by Step", with a PRM);
Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally", §5) compare it with step-level
search at equal generation budgets. N is the length of `candidates`; a curve over N comes from
calling it on the first N samples (or on subsets) of a larger draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch

from rlhf.search.aggregate import Scores, response_scores
from rlhf.search.cost import SearchCost

Candidate = TypeVar("Candidate")


@dataclass(frozen=True)
class Selection(Generic[Candidate]):
    """The response best-of-N kept."""

    index: int
    """Its position among the candidates."""
    candidate: Candidate
    """The response itself (whatever the caller passed: text, token ids, a row)."""
    score: float
    """Its score: the ORM's, or the PRM aggregate."""
    cost: SearchCost
    """N samples, their tokens, N scorings, 1 round."""


def best_of_n(candidates: Sequence[Candidate], scores: Scores, *, token_counts: Sequence[int] | torch.Tensor,
              how: str = "min") -> Selection[Candidate]:
    """The highest-scoring of N responses; among equal scores the earliest, so the choice is
    deterministic and N = 1 returns the only sample.

    Args:
        candidates: [N] the responses, N >= 1.
        scores: [N] ORM scores, or N lists of PRM step scores folded by `how`
            (:func:`rlhf.search.aggregate.response_scores`).
        token_counts: [N] tokens generated for each response: the cost, counted whether or not
            the response is kept.
        how: the PRM aggregation (min, product, last, mean); ignored for ORM scores.
    """
    values = response_scores(scores, how)
    _check_lengths(len(candidates), scores=len(values), token_counts=len(token_counts))
    index = max(range(len(values)), key=values.__getitem__)  # max keeps the first of equal keys
    return Selection(index, candidates[index], values[index], SearchCost.of_samples(token_counts, scored=True))


def _check_lengths(n: int, **lengths: int) -> None:
    """N >= 1 candidates and one entry per candidate in each of `lengths` (name: length)."""
    if n < 1:
        raise ValueError("best_of_n needs at least one candidate")
    for name, length in lengths.items():
        if length != n:
            raise ValueError(f"best_of_n: {name} has {length} entries for {n} candidates; give one per candidate")
