"""The RL loop: the same for every algorithm and backend. Each iteration runs the numbered
steps of :func:`rlhf.controller.step.rl_step`, then logs, evaluates and checkpoints.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rlhf.algorithms.advantages import estimator
from rlhf.controller.checkpoint import load_checkpoint, resume_point, save_checkpoint, truncate_metrics
from rlhf.controller.episodes import evaluate_episodes, multi_turn_source
from rlhf.controller.guards import NonFiniteGuard
from rlhf.controller.interrupt import RunInterrupted, stop_on_signals
from rlhf.controller.roles import Roles, build_roles
from rlhf.controller.samples import sample_generations
from rlhf.controller.setup import Run, sampling_params
from rlhf.controller.step import rl_step
from rlhf.controller.sync_check import SyncChecker
from rlhf.data.prompts import PromptStream
from rlhf.eval.sampled import eval_plan, evaluate_policy
from rlhf.logging.factory import build_loggers
from rlhf.logging.jsonl import METRICS_FILE, SAMPLES_FILE
from rlhf.rollout.async_source import AsyncRolloutSource
from rlhf.rollout.source import RolloutSource
from rlhf.rollout.sync_source import SyncRolloutSource
from rlhf.search.training import SearchedResponses
from rlhf.timing import PhaseTimer


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
    source = None
    try:
        source = rollout_source(run)
        return _train(run, roles, source)
    finally:
        if source is not None:
            source.close()  # an asynchronous source's rollout process first: it reads the actor's weights
        roles.close()
        if run.env_pool is not None:
            run.env_pool.close()


def _train(run: Run, roles: Roles, source: RolloutSource) -> RLResult:
    """The loop of :func:`rl_loop` over built roles and the run's rollout source: from step 1,
    or after the checkpoint `trainer.resume` names."""
    config, trainer = run.config, run.config.trainer
    sync_checker = SyncChecker.from_run(run) if config.sync.check_every else None
    timer = PhaseTimer()
    guard = NonFiniteGuard(trainer.max_nonfinite_steps, run.output_dir / "debug")
    # everything of the loop that a checkpoint must restore, each with state_dict / load_state_dict
    stateful = {"kl_controller": roles.kl_controller, "rollout_source": source, "nonfinite_guard": guard}
    if sync_checker is not None:
        stateful["sync_checker"] = sync_checker
    if roles.utterance_critic is not None:  # ArCHer's critic, targets and replay buffer
        stateful["utterance_critic"] = roles.utterance_critic
    start = time.perf_counter()
    first_step, before = begin(run, roles, stateful, timer)
    after = before
    with build_loggers(config, run.output_dir, first_step) as loggers, stop_on_signals() as stop:
        if first_step == 1:
            loggers.log(0, {**before, **timer.pop()})
        for step in range(first_step, trainer.total_steps + 1):
            metrics = rl_step(run, roles, source, timer, step, sync_checker)
            # log, evaluate, checkpoint
            if step == trainer.total_steps or (trainer.eval_every and step % trainer.eval_every == 0):
                after = evaluate(run, roles, timer)
                metrics.update(after)
            metrics.update(timer.pop())
            loggers.log(step, metrics)
            guard.check(step, metrics, source.last.batch if source.last else None)
            if trainer.sample_every and step % trainer.sample_every == 0:
                loggers.log_samples(step, sample_generations(source.last.batch, trainer.num_samples))
            if stop or step == trainer.total_steps or (trainer.save_every and step % trainer.save_every == 0):
                path = save_checkpoint(run, roles, {name: part.state_dict() for name, part in stateful.items()}, step)
            if stop:
                raise RunInterrupted(f"stopped by signal {stop.signal} after step {step}; checkpoint {path} (resume: run the same command again)")
    headline = "eval/success_rate" if config.env.type else "eval/accuracy"
    result = RLResult(before.get(headline), after.get(headline), trainer.total_steps, time.perf_counter() - start)
    (run.output_dir / "summary.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
    return result


def rollout_source(run: Run) -> RolloutSource:
    """Where the run's samples come from: a rollout process beside the trainer with
    `rollout.mode: async` (responses, or episodes against `env`), else episodes against `env`
    in a multi-turn run, else synchronous single-turn generation."""
    config = run.config
    stream = PromptStream(run.train_rows, config.data.train_batch_size, config.trainer.seed)
    if config.rollout.mode == "async":  # single-turn or multi-turn (the rollout process plays the episodes)
        return AsyncRolloutSource(config, stream, run.prompts, tokenizer=run.tokenizer, model_path=run.model_path, sampling=sampling_params(config),
                                  with_baseline=estimator(config.algorithm.advantage).needs_greedy_baseline)
    if config.env.type:
        return multi_turn_source(run)
    searched = SearchedResponses(config.rollout.search, run.tokenizer) if config.rollout.search.strategy != "none" else None
    return SyncRolloutSource(stream, run.prompts, n=config.rollout.n, sampling=sampling_params(config), dynamic=config.data.dynamic_sampling,
                             with_baseline=estimator(config.algorithm.advantage).needs_greedy_baseline, generate=searched)


def begin(run: Run, roles: Roles, stateful: dict, timer: PhaseTimer) -> tuple[int, dict[str, float]]:
    """Restore the checkpoint to resume from, if any (the roles, and each part of `stateful`
    from its entry in the loop state), and push the weights into the rollout engine; returns
    (the first step to run, the evaluation before RL)."""
    path = resume_point(run)
    if path is None:
        roles.sync_weights()  # a rollout engine with weights of its own starts from the trainer's
        return 1, {**run.data_stats, **evaluate(run, roles, timer)}
    state = load_checkpoint(roles, path, list(stateful))
    for name, part in stateful.items():
        part.load_state_dict(state[name])
    roles.sync_weights()
    records = truncate_metrics(run.output_dir / METRICS_FILE, state["step"])
    if (run.output_dir / SAMPLES_FILE).exists():
        truncate_metrics(run.output_dir / SAMPLES_FILE, state["step"])
    print(f"resumed from {path} after step {state['step']}", flush=True)
    before = next((r for r in records if r["step"] == 0), {})
    return state["step"] + 1, {key: value for key, value in before.items() if key.startswith("eval/")}


def evaluate(run: Run, roles: Roles, timer: PhaseTimer) -> dict[str, float]:
    """Held-out evaluation (empty when the recipe has no eval data): greedy accuracy, and with
    `trainer.eval_k` pass@k and maj@k of sampled responses (:mod:`rlhf.eval.sampled`)."""
    if not run.eval_prompts:
        return {}
    if run.config.env.type:
        with timer.phase("eval"):
            return evaluate_episodes(run, roles)
    with timer.phase("eval"):
        return evaluate_policy(roles.rollout, roles.reward, run.eval_prompts, eval_plan(run.config))
