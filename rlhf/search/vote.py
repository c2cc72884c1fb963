"""Majority voting over final answers, plain or weighted by reward-model scores.

- `majority_vote`: self-consistency (Wang et al. 2023, "Self-Consistency Improves Chain of
  Thought Reasoning in Language Models"): the most frequent final answer wins;
- `weighted_vote`: each response votes for its answer with its ORM/PRM score as weight, and the
  answer with the largest total wins (Uesato et al. 2022, "Solving math word problems with
  process- and outcome-based feedback"; Li et al. 2023, "Making Language Models Better
  Reasoners with Step-Aware Verifier", eq. 3; Snell et al. 2024 call it weighted best-of-N).

Answers are the canonical keys of :func:`rlhf.eval.voting.answer_key` (equal answers written
differently share one), as the maj@k estimator reads them. Responses without an answer (None)
abstain: they never win while any response has an answer; when none has one, the vote returns
None and the highest-weighted response, so the caller still gets a response to show (which
any verifier marks wrong).

Ties are broken without randomness, in this order: the larger total weight, then the more
votes, then the answer that appeared first. Totals are exactly rounded sums (`math.fsum`), so
the order of the responses cannot turn a tie into a win. The representative response of the
winning answer is its highest-weighted member, the earliest among equals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlhf.search.aggregate import Scores, response_scores
from rlhf.search.cost import SearchCost


@dataclass(frozen=True)
class Vote:
    """The outcome of a vote over N responses."""

    answer: str | None
    """The winning answer key; None only when no response has an answer."""
    index: int
    """The representative response: the winning answer's highest-weighted member."""
    weight: float
    """The winning answer's total weight (its vote count for a plain majority vote); 0.0 when
    no response has an answer."""
    cost: SearchCost
    """N samples, their tokens, N scorings (0 for a plain majority vote), 1 round."""


def weighted_vote(answers: Sequence[str | None], weights: Scores, *, token_counts: Sequence[int] | torch.Tensor,
                  how: str = "min") -> Vote:
    """The answer with the largest total weight (see the module docstring for abstentions and
    ties).

    Args:
        answers: [N] each response's :func:`rlhf.eval.voting.answer_key` (None: no answer), N >= 1.
        weights: [N] ORM scores, or N lists of PRM step scores folded by `how`
            (:func:`rlhf.search.aggregate.response_scores`); every weight must be >= 0 (map
            an ORM's logits to probabilities first, e.g. with a sigmoid: a negative weight
            would count as a vote against).
        token_counts: [N] tokens generated for each response (the cost).
        how: the PRM aggregation (min, product, last, mean); ignored for ORM scores.
    """
    values = response_scores(weights, how)
    negative = next((i for i, value in enumerate(values) if value < 0), None)
    if negative is not None:
        raise ValueError(f"weighted_vote: the weight of response {negative} is {values[negative]}; weights must be >= 0 "
                         "(map an ORM's logits to probabilities first, e.g. with a sigmoid)")
    answer, index, total = _vote(answers, values, token_counts)
    return Vote(answer, index, total, SearchCost.of_samples(token_counts, scored=True))


def majority_vote(answers: Sequence[str | None], *, token_counts: Sequence[int] | torch.Tensor) -> Vote:
    """The most frequent answer (every response weighs 1; ties as in :func:`weighted_vote`:
    the answer that appeared first), represented by its first response; no reward model."""
    answer, index, total = _vote(answers, [1.0] * len(answers), token_counts)
    return Vote(answer, index, total, SearchCost.of_samples(token_counts, scored=False))


def _vote(answers: Sequence[str | None], weights: list[float], token_counts: Sequence[int]) -> tuple[str | None, int, float]:
    """(winning answer, representative index, total weight) of one vote."""
    if not answers:
        raise ValueError("a vote needs at least one response")
    for name, length in (("weights", len(weights)), ("token_counts", len(token_counts))):
        if length != len(answers):
            raise ValueError(f"a vote: {name} has {length} entries for {len(answers)} answers; give one per response")
    members: dict[str, list[int]] = {}  # insertion order: order of first appearance
    for index, answer in enumerate(answers):
        if answer is not None:
            members.setdefault(answer, []).append(index)
    if not members:  # everyone abstained
        index = max(range(len(weights)), key=weights.__getitem__)
        return None, index, 0.0
    totals = {answer: math.fsum(weights[i] for i in indices) for answer, indices in members.items()}
    winner = max(members, key=lambda answer: (totals[answer], len(members[answer])))  # max keeps the first of equal keys
    return winner, max(members[winner], key=weights.__getitem__), totals[winner]
