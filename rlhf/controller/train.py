"""Entry points behind `rlhf train` and `rlhf sft`: prepare the run, optional SFT, then RL."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from rich.console import Console

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig
from rlhf.controller.checkpoint import resume_point
from rlhf.controller.episodes import demo_batch, greedy_success_rate
from rlhf.controller.interrupt import RunInterrupted, stop_on_signals
from rlhf.controller.loop import RLResult, rl_loop
from rlhf.controller.run_dir import SFT_CHECKPOINT, FinishedRun, finished_run
from rlhf.controller.setup import Run, build_run
from rlhf.controller.sft import STATE_FILE, load_sft_checkpoint, run_sft, save_sft_checkpoint, sft_batch, truncate_sft_metrics
from rlhf.data.prompts import PromptStream
from rlhf.engines.base import OptimConfig
from rlhf.engines.torch_engine import TorchEngine
from rlhf.eval.greedy import greedy_accuracy
from rlhf.logging.console import SFTProgress
from rlhf.logging.factory import check_loggers
from rlhf.logging.jsonl import JsonlWriter
from rlhf.models.lora import save_or_restore_base
from rlhf.rewards.combine import RewardCombiner

console = Console(highlight=False, soft_wrap=True)

SFT_METRICS = "sft_metrics.jsonl"


def train(config: RecipeConfig, recipe_name: str) -> RLResult | None:
    """`rlhf train`: SFT warm start when `sft.enabled`, then the RL loop; prints before/after.
    A run that is already finished is reported and left as it is (returns None)."""
    check_loggers(config.trainer.loggers)  # a missing wandb / mlflow stops the run before any work
    finished = finished_run(config, recipe_name)
    if finished is not None:
        report_finished(finished, config.trainer.total_steps)
        return None
    run = build_run(config, recipe_name)
    console.print(f"run directory: {run.output_dir}")
    try:
        resumed = resume_point(run) is not None
        if config.sft.enabled and not resumed:
            supervised_warm_start(run)
        if config.sft.enabled and config.model.lora.rank:
            # LoRA checkpoints hold only the adapter: the SFT-trained base they apply to is kept
            # in sft_model/ (where export and Ray workers look too) and restored from it on resume
            save_or_restore_base(run.model, run.tokenizer, run.output_dir / "sft_model", resumed)
        result = rl_loop(run)
    finally:
        run.reward.close()
    if result.accuracy_before is not None:
        measure = "success rate" if config.env.type else "accuracy"
        console.print(f"[bold]{accuracy_line(result.accuracy_before, result.accuracy_after, measure)} in {result.seconds:.0f} s")
    return result


def accuracy_line(before: float, after: float, measure: str = "accuracy") -> str:
    return f"held-out {measure}: before RL {before:.3f} -> after RL {after:.3f} ({100 * (after - before):+.1f} points)"


def report_finished(finished: FinishedRun, total_steps: int) -> None:
    """Say that the run is finished, where its results are and how to go on."""
    out, summary = finished.output_dir, finished.summary
    console.print(f"run directory: {out}")
    console.print(f"this run is finished: its checkpoint {finished.checkpoint.name} is at trainer.total_steps={total_steps}: there is nothing to run")
    if summary.get("accuracy_before") is not None and summary.get("accuracy_after") is not None:
        console.print(accuracy_line(summary["accuracy_before"], summary["accuracy_after"]))
    console.print(f"results: {out / 'summary.json'}, {out / 'metrics.jsonl'}; `rlhf report {out}` draws them, `rlhf export {out} OUT` writes the model")
    if finished.ignored:
        console.print("not applied (no step left to run): " + "; ".join(map(str, finished.ignored)))
    console.print(f"to train further, raise trainer.total_steps (e.g. trainer.total_steps={2 * total_steps}); for a new run, choose another trainer.output_dir")


def sft(config: RecipeConfig, recipe_name: str) -> dict[str, float]:
    """`rlhf sft`: the supervised stage alone; saves the model to `<output_dir>/sft_model`,
    never over one an earlier launch saved there."""
    target = Path(config.trainer.output_dir) / "sft_model" if config.trainer.output_dir else None
    if target is not None and (target / "config.json").exists():
        raise ConfigError(f"trainer.output_dir: {str(target.parent)!r} already holds an SFT model ({target}); rlhf sft would "
                          "overwrite it: choose another trainer.output_dir, or remove that directory")
    run = build_run(config, recipe_name)
    console.print(f"run directory: {run.output_dir}")
    try:
        summary = supervised_warm_start(run)
    finally:
        run.reward.close()
        if run.env_pool is not None:
            run.env_pool.close()
    target = run.output_dir / "sft_model"
    run.model.save_pretrained(target)
    run.tokenizer.save_pretrained(target)
    console.print(f"saved the SFT model to {target}")
    return summary


def sft_judge(run: Run) -> RewardCombiner:
    """The reward sources that judge SFT validation in this process. Its accuracy is the first
    source's verdict; on Ray, reward models are served by their worker group, which does not
    exist yet during SFT, so that first source must be one that scores here."""
    judge = run.reward.in_process()
    if not judge.sources or judge.sources[0] is not run.reward.sources[0]:
        first = run.config.reward.sources[0]
        raise ConfigError(
            f"reward.sources.0: sft.enabled judges SFT validation in the driver with the first reward source, but this one "
            f"({first.type}) is a reward model that distributed.backend=ray serves from its worker group, which starts after SFT; "
            "put a verifier or function source first (e.g. the task's math/gsm8k verifier), or run rlhf sft on its own first"
        )
    return judge


def supervised_warm_start(run: Run) -> dict[str, float]:
    """Run the SFT stage on the run's model in place; metrics go to `sft_metrics.jsonl`, a
    progress line to the console every few seconds.

    SIGTERM or Ctrl-C stop it after the current step with its state in `sft_checkpoint/`, and
    the next launch continues from there (its logs kept); the checkpoint goes once SFT is done.
    """
    config, sft_config = run.config, run.config.sft
    rows = list(run.train_rows)
    random.Random(config.trainer.seed).shuffle(rows)
    val_prompts = [run.prompts(rows[: sft_config.val_size])]
    engine = TorchEngine(run.model, OptimConfig(lr=sft_config.lr, grad_clip=1.0), autocast_dtype=run.autocast_dtype)
    stream = PromptStream(rows, sft_config.batch_size, config.trainer.seed)
    saved = run.output_dir / SFT_CHECKPOINT
    resumable = config.trainer.resume == "auto" and (saved / STATE_FILE).exists()  # never: refused in run_dir
    first_step = load_sft_checkpoint(saved, engine, stream) if resumable else 0
    if first_step:
        truncate_sft_metrics(run.output_dir / SFT_METRICS, first_step)
        console.print(f"SFT: continuing after step {first_step} from {saved}")
    writer, progress = JsonlWriter(run.output_dir / SFT_METRICS), SFTProgress(sft_config.max_steps, sft_config.stop_at_accuracy, console=console)

    def log(record: dict) -> None:
        writer.write(record)
        progress.log(record)

    judge = sft_judge(run)

    def validate() -> float:
        if config.env.type:  # a multi-turn run: greedy episodes' success rate
            return greedy_success_rate(run, run.rollout, judge, rows[: sft_config.val_size])
        return greedy_accuracy(run.rollout, judge, val_prompts, config.rollout.max_new_tokens)["eval/accuracy"]

    demo_rng = random.Random(config.trainer.seed + 1)

    def make_batch(batch_rows: list[dict]):
        if config.env.type:  # imitate the environment's demonstrated (legal) play
            return demo_batch(run, batch_rows, demo_rng)
        return sft_batch(run.prompts(batch_rows), run.tokenizer)

    try:
        with stop_on_signals("this SFT step, saving its progress") as stop:
            summary = run_sft(engine, make_batch, stream, validate, sft_config, log, first_step=first_step, stop=lambda: bool(stop))
    finally:
        writer.close()
    steps = summary["sft/steps"]
    if summary["sft/stopped"]:
        save_sft_checkpoint(saved, engine, stream, steps)
        raise RunInterrupted(f"stopped by signal {stop.signal} after SFT step {steps}; its progress is in {saved} (continue: run the same command again)")
    shutil.rmtree(saved, ignore_errors=True)
    console.print(f"SFT: {steps} steps in {summary['sft/seconds']:.0f} s, validation accuracy {summary['sft/val_accuracy']:.3f}")
    return summary
