"""Measure how much RL improves held-out accuracy, per recipe and seed.

    python scripts/measure_learning.py --recipes algorithms/ppo_gae algorithms/rloo \
        --seeds 0 [--min-gain 10] [--parallel 2] [--out runs/measure-learning] [key=value ...]

Each (recipe, seed) is a full `rlhf train` run (SFT warm start, evaluation before RL, RL,
evaluation after). Prints a table of accuracy before/after RL and the gain in points, and
writes `<out>/results.json`. With `--parallel 2` two runs share the machine, each with one
torch thread (accuracies are unchanged: runs are deterministic per seed; wall times are not
comparable to sequential runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def run_recipe(recipe: str, seed: int, out: Path, overrides: list[str]) -> dict:
    """One `rlhf train` run in a subprocess; its summary as a table row."""
    run_dir = out / f"{recipe.replace('/', '-')}-seed-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "rlhf.cli.main", "train", recipe, f"trainer.seed={seed}", f"trainer.output_dir={run_dir}", *overrides]
    start = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{recipe} seed {seed} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    sft_path = run_dir / "sft_metrics.jsonl"
    sft = [json.loads(line) for line in sft_path.read_text().splitlines()] if sft_path.exists() else []
    return {
        "recipe": recipe, "seed": seed, "wall_s": round(seconds, 1), "rl_s": round(summary["seconds"], 1),
        "rl_steps": summary["steps"], "sft_steps": max((r["sft/step"] for r in sft), default=0),
        "accuracy_before": summary["accuracy_before"], "accuracy_after": summary["accuracy_after"],
        "gain_points": round(100 * (summary["accuracy_after"] - summary["accuracy_before"]), 1),
    }


def measure(recipes: list[str], seeds: list[int], out: Path, overrides: list[str], parallel: int) -> list[dict]:
    """All (recipe, seed) runs, `parallel` at a time; rows are printed as they finish."""
    jobs = [(recipe, seed) for recipe in recipes for seed in seeds]
    if parallel > 1:
        overrides = [*overrides, "trainer.num_threads=1"]
    print(f"{'recipe':<28} {'seed':>4} {'wall s':>7} {'RL s':>6} {'steps':>5} {'before':>7} {'after':>7} {'gain':>6}", flush=True)

    def one(job: tuple[str, int]) -> dict:
        row = run_recipe(*job, out, overrides)
        print(f"{row['recipe']:<28} {row['seed']:>4} {row['wall_s']:>7} {row['rl_s']:>6} {row['rl_steps']:>5} "
              f"{row['accuracy_before']:>7.3f} {row['accuracy_after']:>7.3f} {row['gain_points']:>+6.1f}", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, jobs))


def report(rows: list[dict], min_gain: float, max_seconds: float | None, overrides: list[str]) -> dict:
    """Per-recipe medians and whether every run met the targets."""
    for row in rows:
        row["ok"] = row["gain_points"] >= min_gain and (max_seconds is None or row["wall_s"] <= max_seconds)
    recipes = sorted({row["recipe"] for row in rows})
    medians = {r: statistics.median(row["gain_points"] for row in rows if row["recipe"] == r) for r in recipes}
    return {"targets": {"min_gain_points": min_gain, "max_wall_s": max_seconds}, "overrides": overrides,
            "median_gain_points": medians, "max_wall_s": max(row["wall_s"] for row in rows),
            "all_ok": all(row["ok"] for row in rows), "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["algorithms/ppo_gae", "algorithms/rloo"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--min-gain", type=float, default=10.0, help="required gain in accuracy points")
    parser.add_argument("--max-seconds", type=float, default=None, help="required wall time per run")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/measure-learning"))
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    rows = measure(args.recipes, args.seeds, args.out, args.overrides, args.parallel)
    result = report(rows, args.min_gain, args.max_seconds, args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    gains = ", ".join(f"{r} {g:+.1f}" for r, g in result["median_gain_points"].items())
    print(f"median gain (points): {gains}; slowest run {result['max_wall_s']} s; all targets met: {result['all_ok']}")
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
