"""One score per response from a reward model: an ORM's scalar, or a PRM's step scores folded
by a rule. Best-of-N ranks by it and weighted voting sums it.

A PRM gives a probability that each step (so far) is correct (:mod:`rlhf.rewards.prm`). How to
fold them into one score is a choice the papers compare:

- `min`: the weakest step, Lightman et al. 2023 ("Let's Verify Step by Step") and the scalar
  the `prm` reward source reports;
- `product`: the probability that every step is correct, if the step verdicts were independent
  (Lightman et al. 2023 rank by it too);
- `last`: the final step's score, which a PRM trained on rollout outcomes reads as the whole
  solution's chance of success (Wang et al. 2024, Math-Shepherd; Snell et al. 2024, "Scaling
  LLM Test-Time Compute Optimally", §5.1 and appendix, find it the best of the three);
- `mean`: the average step score, for users who expect it.

A response without steps (a blank one: :func:`rlhf.rewards.steps.split_steps` finds none) scores
`NO_STEPS` = 0.0 under every rule, as the `prm` source's scalar: the lowest probability a PRM
gives, so a blank response never beats one with a scored step, and it adds nothing to a vote.
"""

from __future__ import annotations

import math
import numbers
import statistics
from collections.abc import Callable, Sequence

import torch

NO_STEPS = 0.0
"""The score of a response without steps, under every rule."""

_RULES: dict[str, Callable[[list[float]], float]] = {
    "min": min,
    "product": math.prod,
    "last": lambda values: values[-1],
    "mean": statistics.fmean,
}
AGGREGATIONS = tuple(_RULES)
"""The names `how` takes: min, product, last, mean."""

Scores = Sequence[float] | Sequence[Sequence[float]] | Sequence[torch.Tensor] | torch.Tensor
"""One score per response ([n] floats or a tensor [n]: an ORM) or one list per response of its
K_i step scores ([K_i] floats or a tensor [K_i]: a PRM, as `RewardOutput.step_scores`)."""


def aggregate_steps(step_scores: Sequence[float] | torch.Tensor, how: str = "min") -> float:
    """The score of one response from its step scores `[K]` (floats or a 1-d tensor) by the rule
    `how` (see the module docstring); `NO_STEPS` when K = 0."""
    if how not in _RULES:
        raise ValueError(f"unknown PRM aggregation {how!r}; valid: {', '.join(AGGREGATIONS)}")
    if isinstance(step_scores, torch.Tensor):
        if step_scores.dim() != 1:
            raise ValueError(f"step scores of one response must be a 1-d tensor [K], got shape {tuple(step_scores.shape)}")
        step_scores = step_scores.tolist()
    values = check_not_nan([float(value) for value in step_scores], "step")  # min() over a NaN depends on its position
    return float(_RULES[how](values)) if values else NO_STEPS


def response_scores(scores: Scores, how: str = "min") -> list[float]:
    """[n] one float per response: ORM scores as they are, PRM step scores through
    :func:`aggregate_steps` with `how`. Every response must be scored the same way, and no
    score may be NaN (a ranking with NaN depends on the order of comparisons)."""
    if isinstance(scores, torch.Tensor):
        if scores.dim() != 1:
            raise ValueError(f"ORM scores must be a 1-d tensor [n], got shape {tuple(scores.shape)}; "
                             "PRM step scores come as a list of 1-d tensors, one per response")
        scores = scores.tolist()
    kinds = {_is_scalar(score) for score in scores}
    if len(kinds) > 1:
        raise ValueError("scores mix single numbers (an ORM) and lists of step scores (a PRM); give one kind for every response")
    return check_not_nan([float(score) if _is_scalar(score) else aggregate_steps(score, how) for score in scores], "response")


def check_not_nan(values: list[float], what: str) -> list[float]:
    """`values`, after checking that none is NaN (the error names the `what` at fault)."""
    nan = next((i for i, value in enumerate(values) if math.isnan(value)), None)
    if nan is not None:
        raise ValueError(f"the score of {what} {nan} is NaN; a ranking needs a number for every {what}")
    return values


def _is_scalar(score: object) -> bool:
    """A single number (an ORM's score) rather than a sequence of step scores."""
    return isinstance(score, numbers.Real) or (isinstance(score, torch.Tensor) and score.dim() == 0)
