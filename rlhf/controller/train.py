"""Entry points behind `rlhf train` and `rlhf sft`: prepare the run, optional SFT, then RL."""

from __future__ import annotations

import random

from rich.console import Console

from rlhf.config.schema import RecipeConfig
from rlhf.controller.checkpoint import resume_point
from rlhf.controller.loop import RLResult, rl_loop
from rlhf.controller.run_dir import FinishedRun, finished_run
from rlhf.controller.setup import Run, build_run
from rlhf.controller.sft import run_sft, sft_batch
from rlhf.engines.base import OptimConfig
from rlhf.engines.torch_engine import TorchEngine
from rlhf.eval.greedy import greedy_accuracy
from rlhf.logging.factory import check_loggers
from rlhf.logging.jsonl import JsonlWriter
from rlhf.models.lora import save_or_restore_base

console = Console(highlight=False, soft_wrap=True)


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
        console.print(f"[bold]{accuracy_line(result.accuracy_before, result.accuracy_after)} in {result.seconds:.0f} s")
    return result


def accuracy_line(before: float, after: float) -> str:
    return f"held-out accuracy: before RL {before:.3f} -> after RL {after:.3f} ({100 * (after - before):+.1f} points)"


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
    """`rlhf sft`: the supervised stage alone; saves the model to `<output_dir>/sft_model`."""
    run = build_run(config, recipe_name)
    console.print(f"run directory: {run.output_dir}")
    try:
        summary = supervised_warm_start(run)
    finally:
        run.reward.close()
    target = run.output_dir / "sft_model"
    run.model.save_pretrained(target)
    run.tokenizer.save_pretrained(target)
    console.print(f"saved the SFT model to {target}")
    return summary


def supervised_warm_start(run: Run) -> dict[str, float]:
    """Run the SFT stage on the run's model in place; metrics go to `sft_metrics.jsonl`."""
    config = run.config
    sft_config = config.sft
    rows = list(run.train_rows)
    random.Random(config.trainer.seed).shuffle(rows)
    val_prompts = [run.prompts(rows[: sft_config.val_size])]
    engine = TorchEngine(run.model, OptimConfig(lr=sft_config.lr, grad_clip=1.0), autocast_dtype=run.autocast_dtype)
    writer = JsonlWriter(run.output_dir / "sft_metrics.jsonl")

    def validate() -> float:
        return greedy_accuracy(run.rollout, run.reward, val_prompts, config.rollout.max_new_tokens)["eval/accuracy"]

    summary = run_sft(engine, lambda batch_rows: sft_batch(run.prompts(batch_rows), run.tokenizer), rows, validate, sft_config, config.trainer.seed, writer.write)
    writer.close()
    console.print(f"SFT: {summary['sft/steps']} steps in {summary['sft/seconds']:.0f} s, validation accuracy {summary['sft/val_accuracy']:.3f}")
    return summary
