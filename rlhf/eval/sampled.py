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
from rlhf.eval.outcomes import UNLABELLED, EvalOutcomes, eval_metrics
from rlhf.eval.voting import answer_key, ballots
from rlhf.rewards.combine import RewardCombiner
from rlhf.rollout.base import RolloutEngine, SamplingParams


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

    def __post_init__(self) -> None:
        if any(k < 1 for k in self.ks) or (self.ks and self.num_samples < max(self.ks)) or (not self.ks and self.num_samples):
            raise ValueError(f"an evaluation needs 1 <= k <= n for every k, got ks={self.ks}, n={self.num_samples}")


def eval_plan(config: RecipeConfig, ks: Sequence[int] | None = None, num_samples: int | None = None) -> EvalPlan:
    """The plan of `trainer.eval_k` / `trainer.eval_n` with the `rollout` sampling settings;
    `ks` and `num_samples` replace the trainer keys (`rlhf eval --k/--n`; 0: max of ks)."""
    ks = tuple(config.trainer.eval_k if ks is None else ks)
    num_samples = config.trainer.eval_n if num_samples is None else num_samples
    rollout = config.rollout
    sampling = SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k, max_new_tokens=rollout.max_new_tokens)
    return EvalPlan(ks, num_samples or max(ks, default=0), sampling, config.trainer.seed)


def evaluate_policy(rollout: RolloutEngine, reward: RewardCombiner, prompts: list[Batch], plan: EvalPlan) -> dict[str, float]:
    """`eval/accuracy` (greedy), `eval/reward`, `eval/response_length`, and with `plan.ks`
    `eval/pass@k`, `eval/maj@k`, `eval/sampled_response_length`; per data source too when the
    prompts come from several (:func:`rlhf.eval.outcomes.eval_metrics`)."""
    return eval_metrics(collect_outcomes(rollout, reward, prompts, plan), plan.ks)


def collect_outcomes(rollout: RolloutEngine, reward: RewardCombiner, prompts: list[Batch], plan: EvalPlan) -> EvalOutcomes:
    """Generate and judge the greedy response and `plan.num_samples` samples of every prompt.

    Args:
        prompts: pre-tokenised prompt batches (`rlhf.data.prompts.prompt_batch`), each of at
            most `data.eval_batch_size` prompts; a sampling call then holds about as many
            sequences (a batch is split into parts of batch size / n prompts).
    """
    greedy = SamplingParams(max_new_tokens=plan.sampling.max_new_tokens, greedy=True)
    parts = []
    for chunk in prompts:
        correct, total, length = score_responses(reward, rollout.generate(chunk, greedy))
        sources = [UNLABELLED if s is None else str(s) for s in chunk["data_source"]] if "data_source" in chunk else [UNLABELLED] * len(chunk)
        parts.append(EvalOutcomes(correct, total, length, torch.zeros(len(chunk), 0, dtype=torch.bool), torch.zeros(len(chunk), 0), [], sources))
    outcomes = EvalOutcomes.concat(parts)
    if plan.num_samples == 0:
        return outcomes
    with isolated_rng(plan.seed):
        sampled = [_sample(rollout, reward, part, plan) for chunk in prompts for part in chunk.split(max(1, len(chunk) // plan.num_samples))]
    outcomes.sample_correct = torch.cat([correct for correct, _, _ in sampled])
    outcomes.sample_length = torch.cat([length for _, length, _ in sampled])
    outcomes.ballots = [b for _, _, part_ballots in sampled for b in part_ballots]
    return outcomes


def _sample(rollout: RolloutEngine, reward: RewardCombiner, prompts: Batch, plan: EvalPlan) -> tuple[torch.Tensor, torch.Tensor, list]:
    """(correct [P, n] bool, length [P, n] float32, P ballots) of n samples of each of P prompts."""
    n = plan.num_samples
    batch = rollout.generate(prompts.repeat_interleave(n), plan.sampling)
    correct, _, length = score_responses(reward, batch)
    keys = [answer_key(text) for text in batch["response_text"]]
    correct, length = correct.view(len(prompts), n), length.view(len(prompts), n)
    return correct, length, [ballots(keys[i * n : (i + 1) * n], correct[i].tolist()) for i in range(len(prompts))]


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU and CUDA generators for the block and restore their states after it."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
