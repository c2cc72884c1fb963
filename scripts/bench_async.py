"""Synchronous against asynchronous RL on the quickstart task, at equal settings.

    python scripts/bench_async.py [--seeds 0 1 2] [--steps 600] [--set KEY=VALUE ...] [--async-set KEY=VALUE ...]
        [--out bench_async.json]

Each seed trains the quickstart recipe twice, one run at a time, with the same seed (so the same
SFT warm start and the same prompts), the same batches and one torch thread per side:
  sync   `rlhf train quickstart`, the whole process pinned to CPU 0 (generate, then train);
  async  the same with `rollout.mode: async`: the trainer pinned to CPU 0, the rollout process
         to CPU 1 (`async_training.rollout_cpus: [1]`), generating beside training.
Reported per run: RL samples per second (samples trained / the summed `time/step_s`, so
evaluations do not count), held-out greedy accuracy after the same number of samples (and at
every evaluation, with the RL seconds it took to get there), and where each side's time went:
sync's generate and update phases; async's trainer wait (`time/trainer_wait_s`), the rollout
process's waiting and generating seconds, and the staleness of the samples. Prints a table
and the ratios async / sync; writes everything as JSON. Needs 2 CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ARMS = {
    "sync": {"cpus": {0}, "overrides": []},
    "async": {"cpus": {0, 1}, "overrides": ["rollout.mode=async", "async_training.rollout_cpus=[1]"]},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="trainer.seed of each pair of runs")
    parser.add_argument("--steps", type=int, default=None, help="trainer.total_steps (default: the recipe's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="a recipe override for both arms")
    parser.add_argument("--async-set", dest="async_overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the async arm only (e.g. actor.off_policy.correction=tis)")
    parser.add_argument("--recipe", default="quickstart", help="the recipe both arms train")
    parser.add_argument("--workdir", type=Path, default=None, help="where the runs go (default: a new temporary directory)")
    parser.add_argument("--out", type=Path, default=Path("bench_async.json"), help="JSON output file")
    return parser.parse_args(argv)


def run_arm(args: argparse.Namespace, arm: str, seed: int, workdir: Path) -> dict:
    """One training run of `arm`; its measurements (see the module docstring)."""
    out = workdir / f"{arm}_seed{seed}"
    command = [sys.executable, "-m", "rlhf.cli.main", "train", args.recipe, f"trainer.output_dir={out}", f"trainer.seed={seed}",
               "trainer.num_threads=1", *ARMS[arm]["overrides"], *args.overrides, *(args.async_overrides if arm == "async" else [])]
    if args.steps is not None:
        command.append(f"trainer.total_steps={args.steps}")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    log = workdir / f"{arm}_seed{seed}.log"
    with log.open("w") as handle:
        status = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=lambda: os.sched_setaffinity(0, ARMS[arm]["cpus"])).returncode
    if status != 0:
        raise SystemExit(f"{arm} seed {seed} failed (exit {status}); see {log}")
    from rlhf.config.loader import load_recipe

    config = load_recipe(out / "config.yaml")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return measure(records, config.data.train_batch_size * config.rollout.n)


def measure(records: list[dict], samples_per_step: int) -> dict:
    """The numbers of one run from its metrics.jsonl records."""
    steps = [r for r in records if r["step"] > 0]
    samples = len(steps) * samples_per_step
    rl_seconds = sum(r["time/step_s"] for r in steps)
    elapsed, curve = 0.0, []
    for record in records:
        elapsed += record.get("time/step_s", 0.0)
        if "eval/accuracy" in record:
            curve.append({"step": record["step"], "rl_seconds": round(elapsed, 2), "accuracy": record["eval/accuracy"]})

    def median(key: str) -> float | None:
        values = [r[key] for r in steps if key in r]
        return round(statistics.median(values), 4) if values else None

    result = {
        "steps": len(steps), "rl_seconds": round(rl_seconds, 2), "accuracy_before": curve[0]["accuracy"], "accuracy_after": curve[-1]["accuracy"],
        "curve": curve, "step_s": median("time/step_s"), "samples": samples, "samples_per_s": round(samples / rl_seconds, 2),
        "phases_s": {key.removeprefix("time/").removesuffix("_s"): median(key) for key in (
            "time/generate_s", "time/update_s", "time/reward_s", "time/trainer_wait_s", "time/rollout_wait_s", "time/rollout_generate_s")
            if median(key) is not None},
    }
    if "async/staleness_mean" in steps[0]:
        result["staleness_mean"] = round(statistics.mean(r["async/staleness_mean"] for r in steps), 3)
        result["staleness_max"] = max(r["async/staleness_max"] for r in steps)
        result["dropped"] = sum(r["async/dropped"] for r in steps)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        raise SystemExit("needs CPUs 0 and 1 (one per side)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_async-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"work directory: {workdir}", flush=True)
    runs: dict[str, dict[str, dict]] = {}
    for seed in args.seeds:
        for arm in ARMS:
            runs.setdefault(str(seed), {})[arm] = run_arm(args, arm, seed, workdir)
            result = runs[str(seed)][arm]
            print(f"seed {seed} {arm:5s}: {result.get('samples_per_s')} samples/s, step {result['step_s']} s, "
                  f"accuracy {result['accuracy_before']:.3f} -> {result['accuracy_after']:.3f}, phases {result['phases_s']}", flush=True)
    summary = summarize(runs)
    print(json.dumps(summary, indent=2))
    args.out.write_text(json.dumps({"settings": {**vars(args), "workdir": str(workdir), "out": str(args.out)}, "runs": runs, "summary": summary},
                                   indent=2, default=str) + "\n")
    print(f"written to {args.out}")
    return 0


def summarize(runs: dict[str, dict[str, dict]]) -> dict:
    """Per seed: async / sync samples per second, and the accuracy difference (points)."""
    per_seed = {}
    for seed, arms in runs.items():
        sync, asynchronous = arms["sync"], arms["async"]
        per_seed[seed] = {
            "speedup": round(asynchronous["samples_per_s"] / sync["samples_per_s"], 3),
            "accuracy_sync": sync["accuracy_after"], "accuracy_async": asynchronous["accuracy_after"],
            "accuracy_difference_points": round(100 * (asynchronous["accuracy_after"] - sync["accuracy_after"]), 1),
        }
    return {"per_seed": per_seed, "speedup_median": statistics.median(s["speedup"] for s in per_seed.values()),
            "accuracy_difference_max_points": max(abs(s["accuracy_difference_points"]) for s in per_seed.values())}


if __name__ == "__main__":
    sys.exit(main())
