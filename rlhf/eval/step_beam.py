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

Several beam widths (`--beam-width 1,2,4`) make the step beam a line of the scaling curve:
each width is one point, searched from the same seed, with k fixed and its own token budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

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


def beam_line(widths: Sequence[int], k: int, token_budget: int, max_new_tokens: int) -> tuple[BeamSettings, ...]:
    """The settings of the step beam's points: one per width (ascending, each once), each with
    its token budget spelled out (`token_budget`, or 0: width · k · `max_new_tokens`)."""
    settings = (BeamSettings(width, k, token_budget) for width in sorted(set(widths)))
    return tuple(replace(each, token_budget=each.budget(max_new_tokens)) for each in settings)


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

    def means(self) -> dict[str, float]:
        """{accuracy, finished (share), tokens_per_prompt, steps_per_prompt}: one point of the line."""
        return {"accuracy": self.correct.float().mean().item(), "finished": self.finished.float().mean().item(),
                "tokens_per_prompt": self.tokens.mean().item(), "steps_per_prompt": self.steps.mean().item()}


BeamLine = dict[BeamSettings, BeamOutcomes]
"""The step beam's outcomes at each of its settings, in ascending width."""

_METRICS = {"accuracy": "step_beam", "tokens_per_prompt": "step_beam_tokens", "steps_per_prompt": "step_beam_steps",
            "finished": "step_beam_finished"}
"""The metric name of each of :meth:`BeamOutcomes.means`."""


def beam_metrics(line: BeamLine, prefix: str = "eval/") -> dict[str, float]:
    """`step_beam` (accuracy), `step_beam_tokens` and `step_beam_steps` (generated per prompt),
    `step_beam_finished` (share of solutions that ended within the budget) of the widest
    setting (the headline number), then the same with `@W` for each width W of the line."""
    named = {settings.beam_width: {_METRICS[key]: value for key, value in outcomes.means().items()} for settings, outcomes in line.items()}
    widest = named[max(named)]
    return {**{f"{prefix}{name}": value for name, value in widest.items()},
            **{f"{prefix}{name}@{width}": value for width, values in named.items() for name, value in values.items()}}


def beam_points(line: BeamLine) -> list[dict]:
    """The line as `scaling.json` holds it: per setting {beam_width, k, token_budget} and
    :meth:`BeamOutcomes.means`."""
    return [{**asdict(settings), **outcomes.means()} for settings, outcomes in line.items()]


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

