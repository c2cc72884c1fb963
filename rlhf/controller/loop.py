"""The RL loop: one function of numbered steps, the same for every algorithm and backend.

    (1) take a prompt batch            (5) advantages
    (2) generate n responses each      (6) policy update in mini-batches over ppo_epochs
    (3) score them                     (7) push the new weights to the rollout engine
    (4) old (and reference) logprobs   (8) log, evaluate, checkpoint

Algorithm variants are choices of pure functions and flags inside these steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
import torch

from rlhf.algorithms.advantages import get_advantage_estimator
from rlhf.algorithms.kl import kl_estimate
from rlhf.controller.roles import Roles
from rlhf.controller.setup import Run, build_roles, sampling_params
from rlhf.controller.timing import PhaseTimer
from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream
from rlhf.eval.greedy import greedy_accuracy
from rlhf.logging.console import ConsoleLogger
from rlhf.logging.jsonl import JsonlWriter


@dataclass
class RLResult:
    """What a finished RL run reports."""

    accuracy_before: float | None
    accuracy_after: float | None
    steps: int
    seconds: float


def rl_loop(run: Run) -> RLResult:
    """Run `trainer.total_steps` RL steps on `run`, writing `metrics.jsonl` in its directory."""
    config, trainer = run.config, run.config.trainer
    roles = build_roles(run)
    stream = PromptStream(run.train_rows, config.data.train_batch_size, trainer.seed)
    writer = JsonlWriter(run.output_dir / "metrics.jsonl")
    timer = PhaseTimer()
    start = time.perf_counter()
    before = evaluate(run, roles, timer)
    writer.write({"step": 0, **before, **timer.pop()})
    after = before
    with ConsoleLogger(trainer.total_steps, trainer.log_every) as progress:
        for step in range(1, trainer.total_steps + 1):
            metrics = rl_step(run, roles, next(stream), timer)
            # 8. log, evaluate, checkpoint
            if step == trainer.total_steps or (trainer.eval_every and step % trainer.eval_every == 0):
                after = evaluate(run, roles, timer)
                metrics.update(after)
            metrics.update(timer.pop())
            record = {"step": step, **metrics}
            writer.write(record)
            progress.step(record)
    writer.close()
    result = RLResult(before.get("eval/accuracy"), after.get("eval/accuracy"), trainer.total_steps, time.perf_counter() - start)
    (run.output_dir / "summary.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result


def rl_step(run: Run, roles: Roles, rows: list[dict], timer: PhaseTimer) -> dict[str, float]:
    """Steps 1-7 of one RL iteration on the prompt `rows`; returns the step's metrics."""
    config = run.config
    step_start = time.perf_counter()
    # 1. take a prompt batch; every prompt is its own group, repeated n times in a row
    prompts = run.prompts(rows)
    prompts.set("group_index", list(range(len(prompts))))
    # 2. generate n responses per prompt
    with timer.phase("generate"):
        batch = roles.rollout.generate(prompts.repeat_interleave(config.rollout.n), sampling_params(config))
    # 3. score them
    with timer.phase("reward"):
        scores, _, reward_metrics = roles.reward.score(batch)
        batch.set("scores", scores)
    # 4. old logprobs (skipped for a single on-policy update, which reuses its own forward),
    #    and reference logprobs when a KL term is on
    if roles.ref is not None or not roles.actor.is_single_on_policy_update(len(batch)):
        with timer.phase("old_logprobs"):
            batch.set("old_logprobs", roles.actor.compute_logprobs(batch))
    if roles.ref is not None:
        with timer.phase("ref_logprobs"):
            batch.set("ref_logprobs", roles.ref.compute_logprobs(batch))
    # 5. advantages
    with timer.phase("advantage"):
        kl_metrics = apply_kl_penalty(batch, config.algorithm.kl)
        estimator = get_advantage_estimator(config.algorithm.advantage)
        advantages, returns = estimator(batch["scores"], batch["group_index"], batch["response_mask"].float())
        batch.set("advantages", advantages).set("returns", returns)
    # 6. policy update in mini-batches over ppo_epochs
    with timer.phase("update"):
        actor_metrics = roles.actor.update_policy(batch)
    # 7. push the new weights to the rollout engine
    with timer.phase("weight_sync"):
        synced_bytes = roles.rollout.update_weights(roles.actor.named_weights())
    step_seconds = time.perf_counter() - step_start
    return {**batch_metrics(batch, scores, step_seconds), **reward_metrics, **kl_metrics, **actor_metrics, "sync/bytes": synced_bytes}


def apply_kl_penalty(batch: Batch, kl_config) -> dict[str, float]:
    """With `algorithm.kl.placement: reward`, subtract β·Σ_t KL_t from each sequence's score
    (outcome estimators see the penalised score); returns the mean sequence KL as a metric."""
    if "ref_logprobs" not in batch:
        return {}
    mask = batch["response_mask"].float()
    kl = kl_estimate(batch["old_logprobs"], batch["ref_logprobs"], kl_config.kind) * mask
    sequence_kl = kl.sum(dim=-1)
    if kl_config.placement == "reward":
        batch.set("scores", batch["scores"] - kl_config.coef * sequence_kl)
    return {"kl/sequence_mean": sequence_kl.mean().item()}


def batch_metrics(batch: Batch, scores: torch.Tensor, step_seconds: float) -> dict[str, float]:
    """Reward, length and throughput of one RL batch."""
    response_tokens = batch["response_mask"].sum()
    total_tokens = int(response_tokens + batch["prompt_mask"].sum())
    lengths = batch["response_mask"].sum(dim=-1).float()
    return {
        "reward/mean": scores.mean().item(),
        "reward/std": scores.std().item() if len(scores) > 1 else 0.0,
        "response_length/mean": lengths.mean().item(),
        "response_length/max": lengths.max().item(),
        "time/step_s": step_seconds,
        "perf/tokens_per_s": total_tokens / step_seconds,
        "perf/total_tokens": total_tokens,
    }


def evaluate(run: Run, roles: Roles, timer: PhaseTimer) -> dict[str, float]:
    """Greedy held-out accuracy (empty when the recipe has no eval data)."""
    if not run.eval_prompts:
        return {}
    with timer.phase("eval"):
        return greedy_accuracy(roles.rollout, roles.reward, run.eval_prompts, run.config.rollout.max_new_tokens)
