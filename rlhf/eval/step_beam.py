"""The step beam on held-out problems: each prompt searched with the policy and a PRM, the chosen
solution judged by the verifier, the compute counted (`rlhf eval --search step_beam`).

For one problem (:func:`rlhf.search.beam.step_beam` does the search):

1. `expand`: the rollout engine samples next steps of prompt + partial solution, as token ids,
   stopping at the PRM's own step delimiter (:func:`rlhf.search.expand.expand_with`), so the
   steps the policy ends are the steps the PRM scores;
2. `score`: the partial solutions, decoded with the policy tokenizer, are scored by the PRM
   like responses in training (:class:`rlhf.search.reward_model.SearchRewardModel`: its step
   scores folded by the chosen aggregation);
3. the solution the beam returns is judged by the recipe's verifier (the first reward source),
   as greedy and sampled responses are.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.data.batch import Batch
from rlhf.eval.greedy import score_responses
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import SamplingParams
from rlhf.search.beam_rows import beam_rows
from rlhf.search.expand import StepEngine
from rlhf.search.reward_model import SearchRewardModel


@dataclass(frozen=True)
class BeamSettings:
    """The step beam's knobs (`--beam-width`, `--beam-k`, `--beam-budget`)."""

    beam_width: int = 4
    """Partial solutions kept after each round."""
    k: int = 4
    """Next steps sampled per kept partial solution (beam_width · k first steps)."""
    token_budget: int = 0
    """Generated tokens per problem after which no round starts (0: beam_width · k · max_new_tokens)."""

    def budget(self, max_new_tokens: int) -> int:
        return self.token_budget or self.beam_width * self.k * max_new_tokens


@dataclass
class BeamOutcomes:
    """Per problem: what the step beam found and what it cost (N problems)."""

    correct: torch.Tensor
    """[N] bool: the verifier accepts the chosen solution."""
    finished: torch.Tensor
    """[N] bool: the solution ended (EOS or the length cap) before the budget ran out."""
    tokens: torch.Tensor
    """[N] float32: policy tokens generated, every sampled step counted."""
    steps: torch.Tensor
    """[N] float32: steps sampled."""

    def select(self, indices: list[int]) -> BeamOutcomes:
        index = torch.tensor(indices, dtype=torch.long)
        return BeamOutcomes(self.correct[index], self.finished[index], self.tokens[index], self.steps[index])

    @staticmethod
    def concat(parts: list[BeamOutcomes]) -> BeamOutcomes:
        return BeamOutcomes(*(torch.cat([getattr(p, name) for p in parts]) for name in ("correct", "finished", "tokens", "steps")))


def beam_outcomes(rollout: StepEngine, tokenizer, reward: RewardCombiner, prm: SearchRewardModel, prompts: Batch,
                  sampling: SamplingParams, settings: BeamSettings) -> BeamOutcomes:
    """Steps 1-3 of the module docstring for every prompt of `prompts` (a tokenised prompt
    batch; `tokenizer` is the policy's)."""
    if prm.type != "prm":
        raise ValueError("the step beam scores partial solutions step by step: it needs a PRM, and the reward model is an ORM")
    results, chosen = beam_rows(rollout, tokenizer, prm, prompts, sampling, beam_width=settings.beam_width, k=settings.k,
                                token_budget=settings.budget(sampling.max_new_tokens))
    correct, _, _ = score_responses(reward, chosen)
    return BeamOutcomes(correct, torch.tensor([r.finished for r in results]),
                        torch.tensor([float(r.cost.generated_tokens) for r in results]), torch.tensor([float(r.cost.samples) for r in results]))

