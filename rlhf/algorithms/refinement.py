"""Refinements of process rewards, so a learned step scorer cannot be farmed.

Gao et al. 2024, "On Designing Effective RL Reward at Training Time for LLM Reasoning": summing
raw PRM step scores rewards *more steps* (a policy learns to split its reasoning into many short,
high-scoring steps), not better ones. Two fixes, sec. 4:

- Clip: r_k = min(s_k − η, 0). Only steps the PRM doubts (score below η) cost anything; no
  step earns a positive reward, so the process return is at most 0 whatever the step count.
- Delta: r_k = s_k − s_{k+1} (k ≤ K−2), r_{K−1} = s_{K−1}, r_K = 0. The return from step k
  telescopes to s_k: bounded by one score however many steps follow. The last step is left to
  the success reward (the verifier at the last token).
- Clip-Delta: Delta over the clipped scores (the paper's best combination).

Each function takes the K step scores `s_1..s_K` of ONE response as a 1-D tensor [K] and
returns K step rewards [K] (same dtype). Pure: no I/O, no `.item()`.
"""

from __future__ import annotations

from typing import Callable

import torch


def clip(step_scores: torch.Tensor, eta: float) -> torch.Tensor:
    """r_k = min(s_k − η, 0): penalise only the steps scored below `eta`."""
    return (step_scores - eta).clamp(max=0.0)


def delta(step_scores: torch.Tensor) -> torch.Tensor:
    """r_k = s_k − s_{k+1} for k ≤ K−2, r_{K−1} = s_{K−1}, r_K = 0 (1-based k).

    With K = 1 the only step is the last one and gets 0; the return Σ_{j≥k} r_j equals s_k for
    every k ≤ K−1.
    """
    rewards = torch.zeros_like(step_scores)
    if step_scores.numel() >= 2:
        rewards[:-2] = step_scores[:-2] - step_scores[1:-1]
        rewards[-2] = step_scores[-2]
    return rewards


def clip_delta(step_scores: torch.Tensor, eta: float) -> torch.Tensor:
    """:func:`delta` of the clipped scores min(s_k − η, 0)."""
    return delta(clip(step_scores, eta))


def no_refinement(step_scores: torch.Tensor) -> torch.Tensor:
    """The raw step scores as rewards (exploitable by adding steps; for comparison)."""
    return step_scores.clone()


REFINEMENTS: dict[str, Callable[..., torch.Tensor]] = {
    "none": no_refinement,
    "clip": clip,
    "delta": delta,
    "clip_delta": clip_delta,
}
"""`reward.process.refine` name -> function of (step_scores[, eta])."""


def refine(step_scores: torch.Tensor, mode: str, eta: float = 0.0) -> torch.Tensor:
    """Apply the refinement named `mode` (`none`, `clip`, `delta`, `clip_delta`); `eta` is used
    by the clipping ones. An unknown name lists the valid ones."""
    if mode not in REFINEMENTS:
        raise ValueError(f"unknown process-reward refinement {mode!r}; valid: {', '.join(REFINEMENTS)}")
    if mode in ("clip", "clip_delta"):
        return REFINEMENTS[mode](step_scores, eta)
    return REFINEMENTS[mode](step_scores)


def place_step_rewards(step_rewards: list[torch.Tensor], step_ends: list[torch.Tensor], num_tokens: int) -> torch.Tensor:
    """Token rewards [B, R] with each step's reward on the last token of that step.

    Args:
        step_rewards: B tensors [K_b] (K_b may differ between responses, and be 0).
        step_ends: B long tensors [K_b], the response-token index where each step ends
            (in [0, R)).
        num_tokens: R.
    """
    out = torch.zeros(len(step_rewards), num_tokens, dtype=torch.float32)
    for row, (rewards, ends) in enumerate(zip(step_rewards, step_ends)):
        out[row].index_add_(0, ends.long(), rewards.float())
    return out
