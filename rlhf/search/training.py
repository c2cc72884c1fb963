"""Training on searched responses (`rollout.search`): each response a step learns from is the
one a search through a reward model picks, expert-iteration style (Anthony et al. 2017, "Thinking
Fast and Slow with Deep Learning and Tree Search"; Snell et al. 2024 use the same searches at test
time).

- best_of_n: `n` samples per response, the highest-scored one kept (its tokens, and the
  rollout engine's logprobs of them, which are the sampling policy's);
- step_beam: a beam search over reasoning steps scored by a PRM, per response (its tokens come
  from `generate_steps`, without logprobs).

The step then treats the chosen responses like sampled ones: rewards from the recipe's sources,
advantages within each prompt's group, and the actor recomputes its own logprobs of every
token for the loss, so the update is exact for the tokens it trains on. What it does not undo is
the choice itself: a searched response is more likely than a sample, a bias by design (the
policy is pulled toward what the search finds), which is why importance-sampling corrections
are refused with it.
"""

from __future__ import annotations

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.search_schema import RolloutSearchConfig
from rlhf.data.batch import Batch
from rlhf.rollout.base import SamplingParams
from rlhf.search.beam_rows import beam_rows
from rlhf.search.best_of_n import best_of_n
from rlhf.search.reward_model import SearchRewardModel


class SearchedResponses:
    """`generate(engine, prompts, sampling) -> (responses, metrics)` for a training step: one
    searched response per row of `prompts` (see the module docstring)."""

    def __init__(self, config: RolloutSearchConfig, tokenizer):
        self.config, self.tokenizer = config, tokenizer
        self.reward_model = SearchRewardModel(config.reward_model, config.aggregate, option="rollout.search.reward_model")
        if config.strategy == "step_beam" and self.reward_model.type != "prm":
            raise ConfigError(f"rollout.search.strategy: step_beam scores partial solutions step by step and needs a PRM; "
                              f"rollout.search.reward_model {config.reward_model!r} is an ORM (use it with best_of_n)")

    def __call__(self, engine, prompts: Batch, sampling: SamplingParams) -> tuple[Batch, dict[str, float]]:
        if self.config.strategy == "best_of_n":
            return self._best_of_n(engine, prompts, sampling)
        return self._step_beam(engine, prompts, sampling)

    def _best_of_n(self, engine, prompts: Batch, sampling: SamplingParams) -> tuple[Batch, dict[str, float]]:
        """`n` candidates per row in one generate call; the best of each row's n kept."""
        n = self.config.n
        candidates = engine.generate(prompts.repeat_interleave(n), sampling)
        scores = self.reward_model.scores(candidates).view(len(prompts), n)
        lengths = candidates["response_mask"].sum(dim=-1).view(len(prompts), n)
        picks = [best_of_n(list(range(n)), row.tolist(), token_counts=length.tolist()).index for row, length in zip(scores, lengths)]
        chosen = torch.tensor(picks)
        metrics = {"search/score_chosen": scores.gather(1, chosen[:, None]).mean().item(), "search/score_mean": scores.mean().item(),
                   "search/generated_tokens": lengths.float().sum(dim=1).mean().item()}
        return candidates.select(torch.arange(len(prompts)) * n + chosen), metrics

    def _step_beam(self, engine, prompts: Batch, sampling: SamplingParams) -> tuple[Batch, dict[str, float]]:
        """One step beam per row; the solution it returns becomes the row's response."""
        config = self.config
        results, chosen = beam_rows(engine, self.tokenizer, self.reward_model, prompts, sampling, beam_width=config.beam_width,
                                    k=config.beam_k, token_budget=config.beam_budget or config.beam_width * config.beam_k * sampling.max_new_tokens)
        metrics = {"search/score_chosen": sum(r.solution.score for r in results) / len(results),
                   "search/generated_tokens": sum(r.cost.generated_tokens for r in results) / len(results)}
        return chosen, metrics
