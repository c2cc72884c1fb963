"""The RL loop: the same for every algorithm and backend. Each iteration runs the numbered
steps of :func:`rlhf.controller.step.rl_step`, then logs, evaluates and checkpoints.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from rlhf.algorithms.advantages import estimator_inputs
from rlhf.controller.roles import Roles, build_roles
from rlhf.controller.sampling import Sampler
from rlhf.controller.setup import Run
from rlhf.controller.step import rl_step
from rlhf.controller.sync_check import SyncChecker
from rlhf.controller.timing import PhaseTimer
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
    roles = build_roles(run)
    try:
        return _train(run, roles)
    finally:
        roles.close()


def _train(run: Run, roles: Roles) -> RLResult:
    """The loop of :func:`rl_loop` over built roles."""
    config, trainer = run.config, run.config.trainer
    # a rollout engine with weights of its own starts from the trainer's (after SFT, say)
    roles.sync_weights()
    stream = PromptStream(run.train_rows, config.data.train_batch_size, trainer.seed)
    sampler = Sampler(run, stream, with_baseline="baseline_scores" in estimator_inputs(config.algorithm.advantage))
    sync_checker = SyncChecker.from_run(run) if config.sync.check_every else None
    writer = JsonlWriter(run.output_dir / "metrics.jsonl")
    timer = PhaseTimer()
    start = time.perf_counter()
    before = evaluate(run, roles, timer)
    writer.write({"step": 0, **before, **timer.pop()})
    after = before
    with ConsoleLogger(trainer.total_steps, trainer.log_every) as progress:
        for step in range(1, trainer.total_steps + 1):
            metrics = rl_step(run, roles, sampler, timer, step, sync_checker)
            # log, evaluate, checkpoint
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


def evaluate(run: Run, roles: Roles, timer: PhaseTimer) -> dict[str, float]:
    """Greedy held-out accuracy (empty when the recipe has no eval data)."""
    if not run.eval_prompts:
        return {}
    with timer.phase("eval"):
        return greedy_accuracy(roles.rollout, roles.reward, run.eval_prompts, run.config.rollout.max_new_tokens)
