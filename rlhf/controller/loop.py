"""The RL loop: the same for every algorithm and backend. Each iteration runs the numbered
steps of :func:`rlhf.controller.step.rl_step`, then logs, evaluates and checkpoints.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rlhf.algorithms.advantages import estimator_inputs
from rlhf.controller.checkpoint import load_checkpoint, resume_point, save_checkpoint, set_stream_state, stream_state, truncate_metrics
from rlhf.controller.guards import NonFiniteGuard
from rlhf.controller.interrupt import RunInterrupted, stop_on_signals
from rlhf.controller.roles import Roles, build_roles
from rlhf.controller.samples import sample_generations
from rlhf.controller.sampling import Sampler
from rlhf.controller.setup import Run
from rlhf.controller.step import rl_step
from rlhf.controller.sync_check import SyncChecker
from rlhf.controller.timing import PhaseTimer
from rlhf.data.prompts import PromptStream
from rlhf.eval.sampled import eval_plan, evaluate_policy
from rlhf.logging.factory import build_loggers
from rlhf.logging.jsonl import METRICS_FILE, SAMPLES_FILE


@dataclass
class RLResult:
    """What a finished RL run reports."""

    accuracy_before: float | None
    accuracy_after: float | None
    steps: int
    seconds: float


def rl_loop(run: Run) -> RLResult:
    """Run `trainer.total_steps` RL steps on `run`, writing `metrics.jsonl` in its directory."""
    roles = build_roles(run)
    try:
        return _train(run, roles)
    finally:
        roles.close()


def _train(run: Run, roles: Roles) -> RLResult:
    """The loop of :func:`rl_loop` over built roles: from step 1, or after the checkpoint
    `trainer.resume` names."""
    config, trainer = run.config, run.config.trainer
    stream = PromptStream(run.train_rows, config.data.train_batch_size, trainer.seed)
    sampler = Sampler(run, stream, with_baseline="baseline_scores" in estimator_inputs(config.algorithm.advantage))
    sync_checker = SyncChecker.from_run(run) if config.sync.check_every else None
    timer = PhaseTimer()
    guard = NonFiniteGuard(trainer.max_nonfinite_steps, run.output_dir / "debug")
    start = time.perf_counter()
    first_step, before = begin(run, roles, sampler, sync_checker, timer, guard)
    after = before
    with build_loggers(config, run.output_dir, first_step) as loggers, stop_on_signals() as stop:
        if first_step == 1:
            loggers.log(0, {**before, **timer.pop()})
        for step in range(first_step, trainer.total_steps + 1):
            metrics = rl_step(run, roles, sampler, timer, step, sync_checker)
            # log, evaluate, checkpoint
            if step == trainer.total_steps or (trainer.eval_every and step % trainer.eval_every == 0):
                after = evaluate(run, roles, timer)
                metrics.update(after)
            metrics.update(timer.pop())
            loggers.log(step, metrics)
            guard.check(step, metrics, sampler.last.batch if sampler.last else None)
            if trainer.sample_every and step % trainer.sample_every == 0:
                loggers.log_samples(step, sample_generations(sampler.last.batch, trainer.num_samples))
            if stop or step == trainer.total_steps or (trainer.save_every and step % trainer.save_every == 0):
                path = save_checkpoint(run, roles, loop_state(roles, sampler, sync_checker, guard), step)
            if stop:
                raise RunInterrupted(f"stopped by signal {stop.signal} after step {step}; checkpoint {path} (resume: run the same command again)")
    result = RLResult(before.get("eval/accuracy"), after.get("eval/accuracy"), trainer.total_steps, time.perf_counter() - start)
    (run.output_dir / "summary.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result


def begin(run: Run, roles: Roles, sampler: Sampler, sync_checker: SyncChecker | None, timer: PhaseTimer,
          guard: NonFiniteGuard) -> tuple[int, dict[str, float]]:
    """Restore the checkpoint to resume from, if any, and push the weights into the rollout
    engine; returns (the first step to run, the evaluation before RL)."""
    path = resume_point(run)
    if path is None:
        roles.sync_weights()  # a rollout engine with weights of its own starts from the trainer's
        return 1, {**run.data_stats, **evaluate(run, roles, timer)}
    state = load_checkpoint(roles, path)
    roles.kl_controller.load_state_dict(state["kl_controller"])
    set_stream_state(sampler.stream, state["stream"])
    sampler.next_group = state["next_group"]
    guard.streak = state.get("nonfinite_streak", 0)
    if sync_checker is not None:
        sync_checker.syncs = state["syncs"]
    roles.sync_weights()
    records = truncate_metrics(run.output_dir / METRICS_FILE, state["step"])
    if (run.output_dir / SAMPLES_FILE).exists():
        truncate_metrics(run.output_dir / SAMPLES_FILE, state["step"])
    print(f"resumed from {path} after step {state['step']}", flush=True)
    before = next((r for r in records if r["step"] == 0), {})
    return state["step"] + 1, {key: value for key, value in before.items() if key.startswith("eval/")}


def loop_state(roles: Roles, sampler: Sampler, sync_checker: SyncChecker | None, guard: NonFiniteGuard) -> dict:
    """What the controller itself must restore to continue exactly (the roles save theirs)."""
    return {
        "kl_controller": roles.kl_controller.state_dict(), "stream": stream_state(sampler.stream),
        "next_group": sampler.next_group, "syncs": sync_checker.syncs if sync_checker is not None else 0,
        "nonfinite_streak": guard.streak,
    }


def evaluate(run: Run, roles: Roles, timer: PhaseTimer) -> dict[str, float]:
    """Held-out evaluation (empty when the recipe has no eval data): greedy accuracy, and with
    `trainer.eval_k` pass@k and maj@k of sampled responses (:mod:`rlhf.eval.sampled`)."""
    if not run.eval_prompts:
        return {}
    with timer.phase("eval"):
        return evaluate_policy(roles.rollout, roles.reward, run.eval_prompts, eval_plan(run.config))
