"""Corrections for samples the trainer's policy did not generate itself.

A rollout engine samples with a behaviour policy μ: an older version of the weights (in
asynchronous RL), or the same weights computed differently (vLLM in bf16 against the trainer in
fp32). PPO's ratio π_θ / π_old assumes π_old sampled the tokens; when μ did, the gradient is
biased. Each correction here turns the two sets of log-probabilities of the sampled tokens into
per-token weights w [B, R] that multiply the policy loss of each token (0 rejects a token):

    L = agg_t( w_t · ℓ_t ),   ℓ_t the clipped surrogate of token t (rlhf.algorithms.losses)

Rejected tokens stay in the denominator of the aggregation: the indicator sits inside the
expectation, as in the papers below, so a batch with many rejections takes a smaller step.
The weights are constants (no gradient flows through them).

Notation: B sequences, R response tokens; `old_logprobs [B, R]` are the trainer's own
log-probabilities of the sampled tokens before the update (π_old, AReaL's proximal policy),
`behaviour_logprobs [B, R]` the rollout engine's (μ), `mask [B, R]` 1 on tokens that count.
The per-token ratio is ρ_t = π_old(y_t) / μ(y_t), its log clamped to ±20 so exp never overflows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class OffPolicyBounds:
    """Plain numbers of the corrections (from `actor.off_policy`); each uses its own."""

    tis_cap: float = 2.0
    mis_bounds: tuple[float, float] = (0.5, 2.0)
    mis_ratio: str = "geometric"
    icepop_bounds: tuple[float, float] = (0.5, 5.0)
    decoupled_cap: float | None = None


MIS_RATIOS = ("geometric", "product")
"""How :func:`masked_importance_sampling` forms one ratio per sequence."""


def token_log_ratio(old_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, R] log ρ_t = log π_old(y_t) − log μ(y_t), clamped to ±20, 0 where `mask` is 0."""
    assert old_logprobs.shape == behaviour_logprobs.shape == mask.shape, (
        tuple(old_logprobs.shape), tuple(behaviour_logprobs.shape), tuple(mask.shape))
    log_ratio = (old_logprobs.float() - behaviour_logprobs.float()).clamp(-20.0, 20.0)
    return torch.where(mask.bool(), log_ratio, torch.zeros_like(log_ratio))


def truncated_importance_sampling(old_logprobs, behaviour_logprobs, mask, bounds: OffPolicyBounds) -> torch.Tensor:
    """Token-level truncated importance sampling (TIS): w_t = min(ρ_t, C).

    Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You Off-Policy RL Training":
    the gradient of tokens sampled by μ is re-weighted by π_old / μ, truncated at C
    (`tis_cap`, 2 in the paper) to bound its variance. Returns [B, R] weights, 0 on padding."""
    log_ratio = token_log_ratio(old_logprobs, behaviour_logprobs, mask)
    return log_ratio.exp().clamp(max=bounds.tis_cap) * mask


def masked_importance_sampling(old_logprobs, behaviour_logprobs, mask, bounds: OffPolicyBounds) -> torch.Tensor:
    """Sequence-level masked importance sampling (MIS): w_i = ρ_i · 1{lower ≤ ρ_i ≤ upper} on
    every token of sequence i.

    Liu, Li et al. 2025, "When Speed Kills Stability: Demystifying RL Collapse from the
    Training-Inference Mismatch": a sequence whose ratio leaves the band is dropped rather than
    truncated (a truncated weight still trains on a sequence μ and π disagree on). ρ_i is
    `mis_ratio`:
        geometric  exp(token-mean of log ρ_t), independent of the length (the default);
        product    exp(sum of log ρ_t), the sequence's full likelihood ratio as in the paper.
    Returns [B, R] weights (constant over each sequence's valid tokens, 0 on padding)."""
    log_ratio = token_log_ratio(old_logprobs, behaviour_logprobs, mask)
    seq_log_ratio = log_ratio.sum(dim=-1)
    if bounds.mis_ratio == "geometric":
        seq_log_ratio = seq_log_ratio / mask.sum(dim=-1).clamp(min=1)
    elif bounds.mis_ratio != "product":
        raise ValueError(f"unknown mis_ratio {bounds.mis_ratio!r}; valid: {', '.join(MIS_RATIOS)}")
    seq_ratio = seq_log_ratio.clamp(-20.0, 20.0).exp()
    lower, upper = bounds.mis_bounds
    kept = (seq_ratio >= lower) & (seq_ratio <= upper)
    return (seq_ratio * kept)[:, None] * mask


def icepop(old_logprobs, behaviour_logprobs, mask, bounds: OffPolicyBounds) -> torch.Tensor:
    """IcePop's token masking: w_t = ρ_t · 1{α ≤ ρ_t ≤ β}.

    Ling Team 2025, "Every Step Evolves: Scaling RL for Trillion-Scale Thinking Model" (Ring-1T),
    sec. 3: tokens whose training and inference probabilities disagree by more than the band
    [α, β] (`icepop_bounds`, 0.5 and 5 in the paper) give no gradient; the others are
    importance-weighted. Returns [B, R] weights, 0 on padding."""
    log_ratio = token_log_ratio(old_logprobs, behaviour_logprobs, mask)
    ratio = log_ratio.exp()
    lower, upper = bounds.icepop_bounds
    return ratio * ((ratio >= lower) & (ratio <= upper)) * mask


def decoupled_ppo(old_logprobs, behaviour_logprobs, mask, bounds: OffPolicyBounds) -> torch.Tensor:
    """AReaL's decoupled PPO objective: the trust region around a proximal policy, the
    importance weight against the behaviour policy.

    Fu et al. 2025, "AReaL: A Large-Scale Asynchronous Reinforcement Learning System for
    Language Reasoning", eq. 5: J = E_μ[ π_prox/μ · min(u·A, clip(u, 1 ± ε)·A) ] with
    u = π_θ / π_prox. Here π_prox is `old_logprobs`, the trainer's policy just before this
    update (so the clipped surrogate of rlhf.algorithms.losses is unchanged) and the weight is
    π_prox / μ, capped at `decoupled_cap` when one is set (the paper's is uncapped). With a cap
    it equals TIS's weight: the two differ in what π_old is taken to mean (TIS: the policy that
    should have sampled; AReaL: a recent policy that anchors the trust region while μ may be
    many versions old). Returns [B, R] weights, 0 on padding."""
    ratio = token_log_ratio(old_logprobs, behaviour_logprobs, mask).exp()
    if bounds.decoupled_cap is not None:
        ratio = ratio.clamp(max=bounds.decoupled_cap)
    return ratio * mask


Correction = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, OffPolicyBounds], torch.Tensor]

OFF_POLICY_CORRECTIONS: dict[str, Correction | None] = {
    "none": None,
    "tis": truncated_importance_sampling,
    "mis": masked_importance_sampling,
    "icepop": icepop,
    "decoupled": decoupled_ppo,
}
"""`actor.off_policy.correction` -> (old_logprobs, behaviour_logprobs, mask, bounds) -> [B, R]
weights; 'none' trains as if π_old had sampled."""


def off_policy_weights(name: str, old_logprobs, behaviour_logprobs, mask, bounds: OffPolicyBounds) -> torch.Tensor | None:
    """The [B, R] weights of correction `name` (None for 'none'); an unknown name lists the valid ones."""
    try:
        correction = OFF_POLICY_CORRECTIONS[name]
    except KeyError:
        raise KeyError(f"unknown off-policy correction {name!r}; valid: {', '.join(OFF_POLICY_CORRECTIONS)}") from None
    return None if correction is None else correction(old_logprobs, behaviour_logprobs, mask.float(), bounds)


@torch.no_grad()
def weight_stats(weights: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scalars of a correction's [B, R] weights over the valid tokens of `mask`: `weight_mean`,
    `weight_max`, `masked_token_frac` (valid tokens with weight 0) and `masked_seq_frac`
    (sequences with at least one valid token, all of them weighted 0)."""
    valid = mask.bool()
    rejected = (weights == 0) & valid
    has_tokens = valid.any(dim=-1)
    all_rejected = (rejected.sum(dim=-1) == valid.sum(dim=-1)) & has_tokens
    tokens = valid.sum().clamp(min=1)
    return {
        "weight_mean": weights[valid].sum() / tokens,
        "weight_max": weights[valid].max() if valid.any() else torch.zeros(()),
        "masked_token_frac": rejected.sum() / tokens,
        "masked_seq_frac": all_rejected.sum() / has_tokens.sum().clamp(min=1),
    }


@torch.no_grad()
def mismatch_kl(old_logprobs: torch.Tensor, behaviour_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean k3 estimate of KL(μ || π_old) over the tokens μ sampled: E[ρ − 1 − log ρ]
    (Schulman 2020, "Approximating KL divergence"); ≥ 0 per token, 0 when the two agree."""
    log_ratio = token_log_ratio(old_logprobs, behaviour_logprobs, mask)
    k3 = (log_ratio.exp() - 1 - log_ratio) * mask
    return k3.sum() / mask.sum().clamp(min=1)
