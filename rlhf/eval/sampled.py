"""Held-out evaluation with a rollout engine: one greedy response per prompt (`eval/accuracy`)
and, for pass@k and maj@k, n sampled responses per prompt at the recipe's temperature.

Each response is judged by the first reward source (the verifier), as in
:mod:`rlhf.eval.greedy`; metrics come from :mod:`rlhf.eval.outcomes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.data.batch import Batch
from rlhf.eval.greedy import score_responses
from rlhf.eval.outcomes import UNLABELLED, EvalOutcomes, SearchSamples, eval_metrics
from rlhf.eval.voting import Ballots, answer_key, ballots
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine, SamplingParams
from rlhf.eval.step_beam import BeamOutcomes, BeamSettings, beam_outcomes
from rlhf.config.search_schema import SAMPLE_STRATEGIES
from rlhf.search.reward_model import SearchRewardModel


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation generates besides the greedy responses."""

    ks: tuple[int, ...] = ()
    """k of pass@k and maj@k (empty: greedy only)."""
    num_samples: int = 0
    """Sampled responses per prompt, n >= max(ks) (0 with no ks)."""
    sampling: SamplingParams = field(default_factory=SamplingParams)
    """How samples are drawn; its max_new_tokens also bounds the greedy responses."""
    seed: int = 0
    """Seed of torch's generators while sampling, restored afterwards (the HF engine's samples
    are then the same at every evaluation and never shift the training run's random stream;
    vLLM and Ray workers sample with generators of their own)."""
    search: tuple[str, ...] = ()
    """Search strategies through a reward model: best_of_n and weighted_vote are judged on the
    samples at every k (:mod:`rlhf.search.at_k`); step_beam searches each prompt on its own
    (:mod:`rlhf.eval.step_beam`)."""
    beams: tuple[BeamSettings, ...] = ()
    """The step beam's settings, one per point of its line (ascending width, budgets spelled
    out: :func:`rlhf.eval.step_beam.beam_line`); needed with step_beam."""

    def __post_init__(self) -> None:
        if any(k < 1 for k in self.ks) or (self.ks and self.num_samples < max(self.ks)) or (not self.ks and self.num_samples):
            raise ValueError(f"an evaluation needs 1 <= k <= n for every k, got ks={self.ks}, n={self.num_samples}")
        if set(self.search) & set(SAMPLE_STRATEGIES) and not self.ks:
            raise ValueError(f"search strategies {self.search} are judged on samples: name the k values")
        if ("step_beam" in self.search) != bool(self.beams):
            raise ValueError(f"the step beam's settings {self.beams} go with step_beam in the search strategies {self.search}, and only with it")


def eval_plan(config: RecipeConfig, ks: Sequence[int] | None = None, num_samples: int | None = None,
              search: Sequence[str] = (), beams: Sequence[BeamSettings] = ()) -> EvalPlan:
    """The plan of `trainer.eval_k` / `trainer.eval_n` with the `rollout` sampling settings;
    `ks` and `num_samples` replace the trainer keys (`rlhf eval --k/--n`; 0: max of ks);
    `search` names the search strategies to judge on the samples (`rlhf eval --search`), and
    `beams` the step beam's settings (`--beam-*`)."""
    ks = tuple(config.trainer.eval_k if ks is None else ks)
    num_samples = config.trainer.eval_n if num_samples is None else num_samples
    rollout = config.rollout
    sampling = SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k, max_new_tokens=rollout.max_new_tokens)
    return EvalPlan(ks, num_samples or max(ks, default=0), sampling, config.trainer.seed, tuple(search), tuple(beams))


def evaluate_policy(rollout: RolloutEngine, reward: RewardCombiner, prompts: list[Batch], plan: EvalPlan) -> dict[str, float]:
    """`eval/accuracy` (greedy), `eval/reward`, `eval/response_length`, and with `plan.ks`
    `eval/pass@k`, `eval/maj@k`, `eval/sampled_response_length`; per data source too when the
    prompts come from several (:func:`rlhf.eval.outcomes.eval_metrics`)."""
    return eval_metrics(collect_outcomes(rollout, reward, prompts, plan), plan.ks)


def collect_outcomes(rollout: RolloutEngine, reward: RewardCombiner, prompts: list[Batch], plan: EvalPlan,
                     search_model: SearchRewardModel | None = None, tokenizer=None) -> EvalOutcomes:
    """Generate and judge the greedy response and `plan.num_samples` samples of every prompt.

    Args:
        prompts: pre-tokenised prompt batches (`rlhf.data.prompts.prompt_batch`), each of at
            most `data.eval_batch_size` prompts; a sampling call then holds about as many
            sequences (a batch is split into parts of batch size / n prompts).
        search_model: scores every sample for `plan.search` (needed when that is not empty).
        tokenizer: the policy tokenizer (needed for the step beam's partial solutions).
    """
    greedy = SamplingParams(max_new_tokens=plan.sampling.max_new_tokens, greedy=True)
    parts = []
    for chunk in prompts:
        correct, total, length = score_responses(reward, rollout.generate(chunk, greedy))
        sources = [UNLABELLED if s is None else str(s) for s in chunk["data_source"]] if "data_source" in chunk else [UNLABELLED] * len(chunk)
        parts.append(EvalOutcomes(correct, total, length, torch.zeros(len(chunk), 0, dtype=torch.bool), torch.zeros(len(chunk), 0), [], sources))
    outcomes = EvalOutcomes.concat(parts)
    for settings in plan.beams:  # every width from the same seed: one point does not depend on which others ran
        with isolated_rng(plan.seed):
            outcomes.beams[settings] = BeamOutcomes.concat([beam_outcomes(rollout, tokenizer, reward, search_model, chunk, plan.sampling, settings)
                                                            for chunk in prompts])
    if plan.num_samples == 0:
        return outcomes
    with isolated_rng(plan.seed):
        sampled = [_sample(rollout, reward, part, plan, search_model) for chunk in prompts
                   for part in chunk.split(max(1, len(chunk) // plan.num_samples))]
    outcomes.sample_correct = torch.cat([part.correct for part in sampled])
    outcomes.sample_length = torch.cat([part.length for part in sampled])
    outcomes.ballots = [b for part in sampled for b in part.ballots]
    outcomes.search = SearchSamples.concat([part.search for part in sampled]) if _sample_strategies(plan) else None
    return outcomes


@dataclass
class _Samples:
    """n samples of each of P prompts, judged."""

    correct: torch.Tensor
    """[P, n] bool: the verifier accepts the sample."""
    length: torch.Tensor
    """[P, n] float32: response lengths in tokens."""
    ballots: list[Ballots]
    """P: each prompt's samples grouped by final answer."""
    search: SearchSamples | None
    """The reward model's view of the samples, for the sample strategies of plan.search."""


def _sample(rollout: RolloutEngine, reward: RewardCombiner, prompts: Batch, plan: EvalPlan, search_model: SearchRewardModel | None) -> _Samples:
    """Generate n samples of each prompt, judge them, and score them for the search strategies."""
    n = plan.num_samples
    batch = rollout.generate(prompts.repeat_interleave(n), plan.sampling)
    correct, _, length = score_responses(reward, batch)
    keys = [answer_key(text) for text in batch["response_text"]]
    correct, length = correct.view(len(prompts), n), length.view(len(prompts), n)
    votes = [ballots(keys[i * n : (i + 1) * n], correct[i].tolist()) for i in range(len(prompts))]
    if not _sample_strategies(plan):
        return _Samples(correct, length, votes, None)
    scores = search_model.scores(batch)
    search = SearchSamples(_sample_strategies(plan), [keys[i * n : (i + 1) * n] for i in range(len(prompts))], scores.view(len(prompts), n),
                           search_model.vote_weights(scores).view(len(prompts), n))
    return _Samples(correct, length, votes, search)


def _sample_strategies(plan: EvalPlan) -> tuple[str, ...]:
    """The search strategies of `plan` that are judged on its samples."""
    return tuple(name for name in plan.search if name in SAMPLE_STRATEGIES)


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU and CUDA generators for the block and restore their states after it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
