"""A step beam for every row of a prompt batch, with a rollout engine as the policy and a PRM as
the scorer: what `rlhf eval --search step_beam` judges and `rollout.search: step_beam` trains on."""

from __future__ import annotations

from rlhf.data.batch import Batch
from rlhf.rollout.base import SamplingParams
from rlhf.search.beam import BeamResult, step_beam
from rlhf.search.expand import StepEngine, expand_with
from rlhf.search.partials import partial_responses
from rlhf.search.reward_model import SearchRewardModel


def beam_rows(engine: StepEngine, tokenizer, prm: SearchRewardModel, prompts: Batch, sampling: SamplingParams, *,
              beam_width: int, k: int, token_budget: int) -> tuple[list[BeamResult], Batch]:
    """One :func:`rlhf.search.beam.step_beam` per row of `prompts` (a tokenised prompt batch):
    steps sampled by `engine` from prompt + partial solution (as token ids, stopping at the
    PRM's own step delimiter), partial solutions scored by `prm`. Returns the results and the
    solutions as a response batch, one row per prompt (`tokenizer`: the policy's)."""
    results, rows = [], []
    for index in range(len(prompts)):
        problem = prompts.select([index])
        prompt_ids = problem["prompt_ids"][0][problem["prompt_mask"][0].bool()].tolist()
        expand = expand_with(engine, prompt_ids, sampling, delimiter=prm.source.step_split)
        result = step_beam(expand, lambda partials, p=problem: prm.scores(partial_responses(p, partials, tokenizer)).tolist(),
                           beam_width=beam_width, k=k, token_budget=token_budget)
        results.append(result)
        rows.append(partial_responses(problem, [result.solution], tokenizer))
    return results, Batch.concat(rows)
