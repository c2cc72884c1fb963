"""Search strategies at a budget of k samples, estimated from n >= k samples per problem.

An evaluation draws n samples of each problem once; a strategy that spends k samples is then
judged on k-subsets of them, as pass@k and maj@k are (:mod:`rlhf.eval.passk`): the mean over
every k-subset estimates, without bias, the accuracy with k fresh samples, with less variance
than the first k alone.

- best-of-k has a closed form. Rank the n samples by score (the earlier sample first among
  equal scores, as :func:`rlhf.search.best_of_n.best_of_n` breaks ties). The sample at rank r
  (0-based) wins a k-subset exactly when it is in it and no better-ranked sample is, which
  C(n-1-r, k-1) of the C(n, k) subsets do.
- a weighted vote has none (the winner depends on the whole subset): the mean runs over every
  k-subset when there are at most `max_subsets`, else over that many random ones drawn from a
  seeded generator (so an evaluation is reproducible).

Notation: n samples of one problem, k the budget.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch

from rlhf.config.search_schema import SAMPLE_STRATEGIES
from rlhf.search.vote import weighted_vote

MAX_SUBSETS = 256
"""Subsets a weighted vote at k is averaged over (all of them when there are fewer)."""


def best_of_k(scores: Sequence[float], correct: Sequence[bool], k: int) -> float:
    """The chance that best-of-k over a random k-subset of the n samples picks a correct one.

    Args:
        scores: [n] the reward model's score of each sample (higher is better).
        correct: [n] whether the verifier accepts each sample.
        k: samples per selection, 1 <= k <= n.
    """
    n = _check_budget(len(scores), len(correct), k)
    ranked = sorted(range(n), key=lambda i: (-scores[i], i))
    subsets = math.comb(n, k)
    return sum(math.comb(n - 1 - rank, k - 1) for rank, i in enumerate(ranked) if correct[i]) / subsets


def weighted_vote_at_k(answers: Sequence[str | None], weights: Sequence[float], correct: Sequence[bool], k: int,
                       generator: torch.Generator, max_subsets: int = MAX_SUBSETS) -> float:
    """The share of k-subsets whose score-weighted vote (:func:`rlhf.search.vote.weighted_vote`)
    elects a correct answer (the winning answer's representative sample is correct).

    Args:
        answers: [n] each sample's final-answer key (None: no answer).
        weights: [n] each sample's vote weight (>= 0).
        correct: [n] whether the verifier accepts each sample.
        k: samples per vote, 1 <= k <= n.
        generator: draws the random subsets when there are more than `max_subsets`.
    """
    n = _check_budget(len(answers), len(correct), k)
    if math.comb(n, k) <= max_subsets:
        subsets = itertools.combinations(range(n), k)
    else:
        subsets = (sorted(torch.randperm(n, generator=generator)[:k].tolist()) for _ in range(max_subsets))
    wins = total = 0
    for subset in subsets:
        vote = weighted_vote([answers[i] for i in subset], [weights[i] for i in subset], token_counts=[0] * k)
        wins += vote.answer is not None and bool(correct[subset[vote.index]])
        total += 1
    return wins / total


def _check_budget(n: int, other: int, k: int) -> int:
    if n != other:
        raise ValueError(f"one score or answer per sample: got {n} and {other} correctness flags")
    if not 1 <= k <= n:
        raise ValueError(f"a budget of k samples needs 1 <= k <= n, got k={k}, n={n}")
    return n


def mean_search_at_k(strategy: str, answers: list[list[str | None]], scores: torch.Tensor, weights: torch.Tensor,
                     correct: torch.Tensor, k: int, seed: int = 0) -> float:
    """`strategy` at k samples, averaged over N problems.

    Args:
        answers: N lists of n final-answer keys.
        scores: [N, n] reward-model scores (best-of-n ranks by them).
        weights: [N, n] vote weights >= 0 (the weighted vote sums them).
        correct: [N, n] bool, the verifier's verdict on each sample.
        seed: seeds the random subsets of the weighted vote (one generator for the N problems).
    """
    if strategy == "best_of_n":
        values = [best_of_k(s, c, k) for s, c in zip(scores.tolist(), correct.tolist())]
    elif strategy == "weighted_vote":
        generator = torch.Generator().manual_seed(seed)
        values = [weighted_vote_at_k(a, w, c, k, generator) for a, w, c in zip(answers, weights.tolist(), correct.tolist())]
    else:
        raise ValueError(f"no estimator at k for search strategy {strategy!r}; valid: {', '.join(SAMPLE_STRATEGIES)}")
    return sum(values) / len(values)
