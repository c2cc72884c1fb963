"""Advantage estimators.

Notation: B sequences, R response tokens. `scores [B]` are outcome rewards, `token_rewards
[B, R]` per-token rewards, `values [B, R]` critic values, `baseline_scores [B]` the scores of a
baseline (greedy) response, `response_mask [B, R]` is 1 on real response tokens (any 0/1 mask
works), `group_index` (length B, a list or 1-D tensor of labels) names the prompt of each
sample. Every estimator returns float32 `(advantages [B, R], returns [B, R])`, zero where the
mask is 0.

The registry `ADVANTAGE_ESTIMATORS` maps a recipe's `algorithm.advantage` to an
:class:`Estimator` entry: the function, the inputs it reads (declared, so the controller knows
what to prepare: a critic for `values`, a greedy generation for `baseline_scores`) and the
settings it takes. The controller calls :func:`compute_advantages` with everything it has and
each estimator receives exactly its declared inputs.

The token-level recursions and whitening live in :mod:`rlhf.algorithms.returns` and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from rlhf.algorithms.groups import group_ids, group_mean_std, group_sum
from rlhf.algorithms.returns import discounted_returns, gae, whiten
from rlhf.algorithms.turns import archer_token_advantages, turn_rloo

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "Estimator",
    "compute_advantages",
    "discounted_returns",
    "drgrpo",
    "estimator",
    "gae",
    "get_advantage_estimator",
    "grpo",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "remax",
    "rloo",
    "turn_rloo",
    "whiten",
]


def _broadcast_over_tokens(sequence_values: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """[B] per-sequence values -> [B, R] float32, the same value on every valid token, 0 elsewhere."""
    values = sequence_values.float()[:, None].expand(response_mask.shape)
    return torch.where(response_mask.bool(), values, torch.zeros_like(values))


def grpo(
    scores: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    response_mask: torch.Tensor,
    norm_by_std: bool = True,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Group-relative advantages: (score - group mean) / (group std + eps).

    GRPO, Shao et al. 2024 (DeepSeekMath), eq. 3 with outcome supervision: every token of a
    response gets its sequence's normalised score. `norm_by_std=False` keeps only the mean
    baseline, Dr. GRPO (Liu et al. 2025), which removes the bias towards low-variance groups.
    The std is the unbiased sample std. Where we differ: a group of one sample gets advantage 0
    (it has no baseline to compare against).

    Args:
        scores: [B] outcome reward per sample.
        group_index: length-B group labels.
        response_mask: [B, R].
    Returns:
        (advantages [B, R], returns [B, R]); returns equal the advantages.
    """
    ids, num_groups = group_ids(group_index, device=scores.device)
    scores = scores.float()
    mean, std, count = group_mean_std(scores, ids, num_groups)
    advantage = scores - mean
    if norm_by_std:
        advantage = advantage / (std + eps)
    advantage = torch.where(count > 1, advantage, torch.zeros_like(advantage))
    advantages = _broadcast_over_tokens(advantage, response_mask)
    return advantages, advantages


def drgrpo(scores: torch.Tensor, group_index: Sequence | torch.Tensor, response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dr. GRPO (Liu et al. 2025): :func:`grpo` without the division by the group std."""
    return grpo(scores, group_index, response_mask, norm_by_std=False)


def rloo(
    scores: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    response_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE leave-one-out: each score minus the mean score of the OTHER samples of its group.

    Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for RLHF",
    eq. 6 (RLOO with k samples per prompt): A_i = s_i - 1/(k-1) * sum_{j != i} s_j. Vectorised
    with group sums, (group_sum - s_i) / (count - 1). Where we differ: groups may have different
    sizes, and a group of one sample has no other sample to compare with, so it gets 0.

    Args:
        scores: [B] outcome reward per sample.
        group_index: length-B group labels.
        response_mask: [B, R].
    Returns:
        (advantages [B, R], returns [B, R]); returns equal the advantages.
    """
    ids, num_groups = group_ids(group_index, device=scores.device)
    scores = scores.float()
    count = group_sum(torch.ones_like(scores), ids, num_groups)[ids]
    others_sum = group_sum(scores, ids, num_groups)[ids] - scores
    advantage = scores - others_sum / (count - 1).clamp(min=1)
    advantage = torch.where(count > 1, advantage, torch.zeros_like(advantage))
    advantages = _broadcast_over_tokens(advantage, response_mask)
    return advantages, advantages


def reinforce_pp(
    token_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++: the discounted return-to-go of each token, whitened over the whole batch.

    Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models",
    sec. 3: A_t = sum_{i >= t} gamma^(i-t) r_i, then global batch normalisation. The KL penalty
    of the paper's token reward is expected to be folded into `token_rewards` already (the
    controller applies it). The return-to-go restarts where the mask is 0 (see
    :func:`discounted_returns`); the statistics pool every valid token of the batch, with the
    unbiased variance (:func:`whiten`).

    Args:
        token_rewards: [B, R].
        response_mask: [B, R].
        gamma: discount factor.
    Returns:
        (advantages [B, R], returns [B, R]); returns are the un-whitened return-to-go.
    """
    returns = discounted_returns(token_rewards, response_mask, gamma)
    advantages = whiten(returns, response_mask)
    return torch.where(response_mask.bool(), advantages, torch.zeros_like(advantages)), returns


def reinforce_pp_baseline(
    scores: torch.Tensor,
    group_index: Sequence | torch.Tensor,
    response_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ with a group baseline: (score - group mean), broadcast, whitened over the batch.

    Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models",
    the "REINFORCE++-baseline" variant for several samples per prompt: subtract the group mean
    score (like :func:`drgrpo`), then normalise with the mean and std of the whole batch instead
    of the group's. Where we differ: the batch statistics weight each sequence by its number of
    valid tokens (they are taken after broadcasting over tokens), with the unbiased variance.

    Args:
        scores: [B] outcome reward per sample.
        group_index: length-B group labels.
        response_mask: [B, R].
    Returns:
        (advantages [B, R], returns [B, R]); returns equal the advantages.
    """
    ids, num_groups = group_ids(group_index, device=scores.device)
    scores = scores.float()
    mean, _, _ = group_mean_std(scores, ids, num_groups)
    centred = _broadcast_over_tokens(scores - mean, response_mask)
    advantages = whiten(centred, response_mask)
    advantages = torch.where(response_mask.bool(), advantages, torch.zeros_like(advantages))
    return advantages, advantages


def remax(
    token_rewards: torch.Tensor,
    baseline_scores: torch.Tensor,
    response_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ReMax: the undiscounted return-to-go minus the score of the greedy response.

    Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
    Aligning LLMs", Algorithm 1 / eq. 7: the gradient weight is r(x, y) - r(x, y_greedy). With
    an outcome reward on the last token the return-to-go equals r(x, y) on every token; with
    per-token rewards (e.g. a folded-in KL penalty) each token gets the rewards from itself on.
    The greedy baseline is one number per sample, subtracted from every token. No whitening.

    Args:
        token_rewards: [B, R].
        baseline_scores: [B] score of the greedy response to the same prompt.
        response_mask: [B, R].
    Returns:
        (advantages [B, R], returns [B, R]); returns are the return-to-go (gamma = 1).
    """
    returns = discounted_returns(token_rewards, response_mask, gamma=1.0)
    advantages = returns - baseline_scores.float()[:, None]
    return torch.where(response_mask.bool(), advantages, torch.zeros_like(advantages)), returns


@dataclass(frozen=True)
class Estimator:
    """A registered advantage estimator and what it reads.

    `inputs` name the keyword arguments the controller passes, from what it has at step 5 of
    the loop: `scores`, `group_index`, `response_mask`, `token_rewards`, `values` (a critic's),
    `baseline_scores` (scores of greedy responses, ReMax) and the settings `gamma`, `lam`;
    in multi-turn runs also `turn_rewards`, `turn_mask`, `turn_index` (the Batch's),
    `turn_gamma` and with ArCHer `utterance_advantages`, with the Batch's action mask passed as
    `response_mask`.
    """

    fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    inputs: tuple[str, ...]

    @property
    def needs_critic(self) -> bool:
        """The run must train a value model whose `values` this estimator reads (PPO with GAE)."""
        return "values" in self.inputs

    @property
    def needs_greedy_baseline(self) -> bool:
        """Each step must also generate and score one greedy response per prompt (ReMax)."""
        return "baseline_scores" in self.inputs

    @property
    def needs_utterance_critic(self) -> bool:
        """The run trains ArCHer's off-policy utterance critic, whose per-turn advantages
        (`utterance_advantages [B, K]`) this estimator reads."""
        return "utterance_advantages" in self.inputs

    @property
    def needs_turns(self) -> bool:
        """The estimator reads per-turn inputs, which only multi-turn runs (`env` set) produce."""
        return any(key in self.inputs for key in _TURN_INPUTS)


_GROUP = ("scores", "group_index", "response_mask")
_TURN_INPUTS = ("turn_rewards", "turn_mask", "turn_index", "utterance_advantages")

ADVANTAGE_ESTIMATORS: dict[str, Estimator] = {
    "gae": Estimator(gae, ("token_rewards", "values", "response_mask", "gamma", "lam")),
    "grpo": Estimator(grpo, _GROUP),
    "drgrpo": Estimator(drgrpo, _GROUP),
    "rloo": Estimator(rloo, _GROUP),
    "reinforce_pp": Estimator(reinforce_pp, ("token_rewards", "response_mask", "gamma")),
    "reinforce_pp_baseline": Estimator(reinforce_pp_baseline, _GROUP),
    "remax": Estimator(remax, ("token_rewards", "baseline_scores", "response_mask")),
    "turn_rloo": Estimator(turn_rloo, ("turn_rewards", "turn_mask", "turn_index", "response_mask", "group_index", "turn_gamma")),
    "archer": Estimator(archer_token_advantages, ("utterance_advantages", "turn_index", "response_mask")),
}
"""`algorithm.advantage` -> its entry."""


def estimator(name: str) -> Estimator:
    """The entry registered as `name`; an unknown name lists the valid ones."""
    try:
        return ADVANTAGE_ESTIMATORS[name]
    except KeyError:
        raise KeyError(f"unknown advantage estimator {name!r}; valid: {', '.join(sorted(ADVANTAGE_ESTIMATORS))}") from None


def get_advantage_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The function registered as `name`; an unknown name lists the valid ones."""
    return estimator(name).fn


def compute_advantages(name: str, **available) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the estimator `name` with its declared inputs, taken from `available`.

    The controller passes everything it has (scores, group_index, response_mask, token_rewards,
    values, baseline_scores, gamma, lam); what the estimator does not declare is not passed.

    Raises:
        KeyError: `name` is not registered.
        ValueError: a declared input is missing from `available`.
    Returns:
        (advantages [B, R], returns [B, R]).
    """
    entry = estimator(name)
    missing = [key for key in entry.inputs if key not in available]
    if missing:
        raise ValueError(f"advantage estimator {name!r} needs {', '.join(missing)}; got {', '.join(sorted(available)) or 'nothing'}")
    return entry.fn(**{key: available[key] for key in entry.inputs})
