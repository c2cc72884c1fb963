"""Measure the quickstart against its targets: the whole `rlhf train recipes/quickstart.yaml`
command within 180 s on this machine, and held-out greedy accuracy after RL at least 25 points
above the value right before RL, for every seed.

    python scripts/check_quickstart.py --seeds 0 1 2 [--out runs/check-quickstart] [key=value ...]

Prints a table and writes `<out>/results.json`. Runs the seeds one after another (a concurrent
run would share the CPU cores and distort the wall times).
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
from pathlib import Path

MAX_SECONDS = 180.0
MIN_GAIN_POINTS = 25.0


def run_seed(seed: int, out: Path, overrides: list[str]) -> dict:
    run_dir = out / f"seed-{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, "-m", "rlhf.cli.main", "train", "recipes/quickstart.yaml", f"trainer.seed={seed}", f"trainer.output_dir={run_dir}", *overrides]
    start = time.perf_counter()
    completed = subprocess.run(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"seed {seed} failed (exit {completed.returncode}):\n{completed.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    sft = [json.loads(line) for line in (run_dir / "sft_metrics.jsonl").read_text().splitlines()]
    gain = 100 * (summary["accuracy_after"] - summary["accuracy_before"])
    return {
        "seed": seed, "wall_s": round(seconds, 1), "rl_s": round(summary["seconds"], 1),
        "sft_steps": max(r["sft/step"] for r in sft), "accuracy_before": summary["accuracy_before"],
        "accuracy_after": summary["accuracy_after"], "gain_points": round(gain, 1),
        "ok": seconds <= MAX_SECONDS and gain >= MIN_GAIN_POINTS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("runs/check-quickstart"))
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    args = parser.parse_args()
    results = []
    print(f"{'seed':>4} {'wall s':>7} {'RL s':>6} {'SFT steps':>9} {'before':>7} {'after':>7} {'gain':>6}  ok")
    for seed in args.seeds:
        row = run_seed(seed, args.out, args.overrides)
        results.append(row)
        print(f"{row['seed']:>4} {row['wall_s']:>7} {row['rl_s']:>6} {row['sft_steps']:>9} {row['accuracy_before']:>7.3f} {row['accuracy_after']:>7.3f} {row['gain_points']:>+6.1f}  {row['ok']}", flush=True)
    gains = [r["gain_points"] for r in results]
    report = {"targets": {"max_wall_s": MAX_SECONDS, "min_gain_points": MIN_GAIN_POINTS}, "overrides": args.overrides,
              "median_gain_points": statistics.median(gains), "max_wall_s": max(r["wall_s"] for r in results), "all_ok": all(r["ok"] for r in results), "runs": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"median gain {report['median_gain_points']:+.1f} points, slowest run {report['max_wall_s']} s, all targets met: {report['all_ok']}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
