"""Measure what RL does for multi-turn agents: success rate before/after RL on held-out
episodes, per environment recipe, credit-assignment estimator and seed, and the episodes each
run needed to reach a target success rate (ArCHer's claim is sample efficiency: measured here,
whatever it shows).

    python scripts/measure_multi_turn.py --recipes guess_number twenty_questions \
        --estimators grpo turn_rloo archer --seeds 0 1 2 [--target 0.5] [--min-gain 20] \
        [--max-seconds 600] [--parallel 2] [--out runs/measure-multi-turn] [key=value ...]

Each (recipe, estimator, seed) is a full `rlhf train recipes/multi_turn/<recipe>.yaml` run
(SFT warm start on the environment's demonstrations, evaluation, RL, evaluation) with
`algorithm.advantage=<estimator>`. Prints one row per run and writes `<out>/results.json`.
Not a test: numbers go into the issue notes.
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

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "multi_turn"


def run_one(recipe: str, estimator: str, seed: int, out: Path, overrides: list[str], target: float) -> dict:
    """One training run in a subprocess; its before/after success rates, wall time and the
    episodes played until held-out success first reached `target`."""
    run_dir = out / f"{recipe}-{estimator}-seed-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "rlhf.cli.main", "train", str(RECIPES / f"{recipe}.yaml"), f"algorithm.advantage={estimator}",
               f"trainer.seed={seed}", f"trainer.output_dir={run_dir}", *overrides]
    start = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{recipe} {estimator} seed {seed} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curve = [(r["step"], r["eval/success_rate"]) for r in records if "eval/success_rate" in r]
    reached = next((step for step, rate in curve if rate >= target), None)
    before, after = curve[0][1], curve[-1][1]
    return {
        "recipe": recipe, "estimator": estimator, "seed": seed, "wall_s": round(wall, 1), "steps": curve[-1][0],
        "success_before": before, "success_after": after, "gain_points": round(100 * (after - before), 1),
        "best_success": max(rate for _, rate in curve), "curve": curve,
        "episodes_to_target": None if reached is None else reached * episodes_per_step(run_dir),
    }


def episodes_per_step(run_dir: Path) -> int:
    """data.train_batch_size prompts × rollout.n episodes each, from the run's resolved recipe."""
    import yaml

    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    return int(config["data"]["train_batch_size"]) * int(config["rollout"]["n"])


def measure(args: argparse.Namespace) -> list[dict]:
    jobs = [(r, e, s) for r in args.recipes for e in args.estimators for s in args.seeds]
    overrides = [*args.overrides, *(["trainer.num_threads=1"] if args.parallel > 1 else [])]
    print(f"{'recipe':<18} {'estimator':<10} {'seed':>4} {'wall s':>7} {'before':>7} {'after':>7} {'gain':>6} {'best':>6} {'episodes->target':>17}", flush=True)

    def one(job: tuple[str, str, int]) -> dict:
        row = run_one(*job, args.out, overrides, args.target)
        print(f"{row['recipe']:<18} {row['estimator']:<10} {row['seed']:>4} {row['wall_s']:>7} {row['success_before']:>7.3f} "
              f"{row['success_after']:>7.3f} {row['gain_points']:>+6.1f} {row['best_success']:>6.3f} {str(row['episodes_to_target']):>17}", flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        return list(pool.map(one, jobs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=["guess_number", "twenty_questions"])
    parser.add_argument("--estimators", nargs="+", default=["grpo", "turn_rloo", "archer"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=0.5, help="success rate whose first crossing counts the episodes needed")
    parser.add_argument("--min-gain", type=float, default=20.0, help="required gain in success-rate points")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="required wall time per run")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/measure-multi-turn"))
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    rows = measure(args)
    for row in rows:
        row["ok"] = row["gain_points"] >= args.min_gain and row["wall_s"] <= args.max_seconds
    groups = sorted({(r["recipe"], r["estimator"]) for r in rows})
    medians = {f"{recipe}/{est}": statistics.median(r["gain_points"] for r in rows if (r["recipe"], r["estimator"]) == (recipe, est)) for recipe, est in groups}
    result = {"targets": {"min_gain_points": args.min_gain, "max_wall_s": args.max_seconds, "success_target": args.target},
              "overrides": args.overrides, "median_gain_points": medians, "all_ok": all(r["ok"] for r in rows), "runs": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print("median gain (points): " + ", ".join(f"{k} {v:+.1f}" for k, v in medians.items()) + f"; all targets met: {result['all_ok']}")
    return 0 if result["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
