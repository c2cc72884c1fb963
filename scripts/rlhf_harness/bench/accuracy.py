"""Time to accuracy on 2-digit addition: training wall time until the held-out greedy accuracy
reaches a target, rlhf against TRL, both from the same SFT warm start.

    (1) one warm-start checkpoint: rlhf's SFT stage of the quickstart recipe (until 30% greedy
        accuracy, so sampled responses earn reward), saved once and loaded by both arms
    (2) both arms with the quickstart's RL settings (prompts, samples, response length, lr,
        warm-up, cosine schedule over `max_steps`); accuracy of each at step 0
    (3) target = start accuracy + `target_gain`, or `target_accuracy` when given
    (4) in turns, each arm still running trains `eval_every` steps, then both are measured with
        the same greedy evaluation (untimed); an arm stops at the target or after `max_steps`

Only training steps count towards the time; evaluation is excluded. One seed: the number of
steps to a target varies from seed to seed, so read single runs with care.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.config.loader import load_recipe

from rlhf_harness.bench.arm_rlhf import QUICKSTART
from rlhf_harness.bench.common import test_rows
from rlhf_harness.bench.settings import BenchSettings
from rlhf_harness.bench.worker import ArmProcess, build_arms


def warm_start_checkpoint(run_dir: Path, threads: int, seed: int) -> Path:
    """Step 1: `<run_dir>/sft_model`, trained by `rlhf sft quickstart` unless already there."""
    model_dir = run_dir / "sft_model"
    if (model_dir / "config.json").exists():
        return model_dir
    from rlhf.controller.train import sft

    config = load_recipe(QUICKSTART, [f"trainer.output_dir={run_dir}", f"trainer.num_threads={threads}", f"trainer.seed={seed}", "data.eval.path=''"])
    sft(config, "bench-sft")
    return model_dir


def quickstart_settings(model_dir: Path, work_dir: Path, threads: int, seed: int, max_steps: int) -> BenchSettings:
    """Step 2: the quickstart recipe's RL numbers, read from the recipe itself."""
    config = load_recipe(QUICKSTART)
    return BenchSettings(
        model_dir=str(model_dir), work_dir=str(work_dir), prompts=config.data.train_batch_size, samples=config.rollout.n,
        max_new_tokens=config.rollout.max_new_tokens, lr=config.actor.lr, warmup_steps=config.actor.warmup_steps,
        lr_schedule=config.actor.lr_schedule, total_steps=max_steps, threads=threads, seed=seed,
    )


def run_accuracy(processes: dict[str, ArmProcess], settings: BenchSettings, eval_size: int, eval_every: int, target_gain: float, target_accuracy: float | None) -> dict:
    """Steps 2-4 of the module docstring on started workers: {"target", "eval_size", "workers",
    "arms": {name: result}, "ratios"}."""
    rows = test_rows(eval_size)
    workers = build_arms(processes, settings)
    # 2. accuracy at step 0 (the same checkpoint: the arms should agree)
    start = {name: process.call("accuracy", rows, settings.max_new_tokens) for name, process in processes.items()}
    # 3. the target, the same for every arm
    # rounded: 0.27 + 0.15 must be reachable by an accuracy of 0.42
    target = target_accuracy if target_accuracy is not None else round(max(start.values()) + target_gain, 6)
    results = {name: {"start_accuracy": start[name], "curve": [[0, 0.0, start[name]]], "steps": 0, "train_seconds": 0.0,
                      "reached": start[name] >= target, "seconds_to_target": 0.0 if start[name] >= target else None}
               for name in processes}
    # 4. train in turns until every arm reached the target or ran out of steps
    running = [name for name in processes if not results[name]["reached"]]
    while running:
        for name in list(running):
            if train_and_measure(processes[name], results[name], rows, settings, eval_every, target):
                running.remove(name)
    return {"target": target, "eval_size": len(rows), "workers": workers, "arms": results, "ratios": accuracy_ratios(results)}


def train_and_measure(process, result: dict, rows: list[dict], settings: BenchSettings, eval_every: int, target: float) -> bool:
    """One turn of step 4 for one arm; True when the arm is done (target reached or step cap)."""
    steps = min(eval_every, settings.total_steps - result["steps"])
    records = process.call("run", steps)
    result["steps"] += steps
    result["train_seconds"] += sum(record["seconds"] for record in records)
    accuracy = process.call("accuracy", rows, settings.max_new_tokens)
    result["curve"].append([result["steps"], result["train_seconds"], accuracy])
    if accuracy >= target:
        result.update(reached=True, seconds_to_target=result["train_seconds"], steps_to_target=result["steps"])
        return True
    return result["steps"] >= settings.total_steps


def accuracy_ratios(results: dict[str, dict]) -> dict[str, float]:
    """TRL's time to target over rlhf's (> 1: rlhf gets there sooner), when both got there."""
    rlhf, trl = results.get("rlhf"), results.get("trl")
    if not (rlhf and trl and rlhf["seconds_to_target"] and trl["seconds_to_target"]):
        return {}
    return {"trl_over_rlhf_time_to_target": trl["seconds_to_target"] / rlhf["seconds_to_target"]}
