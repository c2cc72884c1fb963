"""Peak resident memory of every shipped recipe's tiny CPU variant.

    python scripts/recipe_memory.py [--recipes quickstart,math_dapo] [--steps 2] [--out recipe_memory.json]

For each top-level recipe in recipes/, its tiny CPU variant (rlhf_harness.tiny_recipes: the hub
model, datasets and reward models swapped for tiny local ones, as the recipe tests run them)
runs `--steps` RL steps with `rlhf train` as a subprocess, sampled every `--interval` seconds
from outside (rlhf_harness.bench.monitor). Reported per recipe, in MiB:
  main peak   VmHWM of the main process (its peak RSS; sampled, so a peak in the last interval
              before exit could be missed, which on the way out does not happen in practice)
  tree sum    the sum of every process's VmHWM over the tree (verifier workers, DeepSpeed
              ranks, Ray's daemons and workers, vLLM engines): an upper bound of the tree's
              peak, since the processes need not peak at once
  tree max    the largest sampled sum of the tree's RSS: a lower bound of the same
  plan        `rlhf plan`'s estimate of the variant's peak per device (model states,
              activations, KV cache: the tensors, without the interpreter and libraries RSS
              also counts)
Writes a table and JSON (every process's peak included). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rlhf_harness.bench.monitor import training_env, watch_run
from rlhf_harness.procs import MIB
from rlhf_harness.tiny_recipes import TINY_VARIANTS, tiny_overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(TINY_VARIANTS), help="comma-separated recipe names (default: every shipped recipe)")
    parser.add_argument("--steps", type=int, default=2, help="RL steps of each run")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=900.0, help="kill a run after this many seconds")
    parser.add_argument("--out", default="recipe_memory.json", help="JSON output file")
    args = parser.parse_args(argv)
    args.recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = [name for name in args.recipes if name not in TINY_VARIANTS]
    if unknown or not args.recipes:
        parser.error(f"--recipes: {', '.join(unknown) or 'none given'}; valid: {', '.join(TINY_VARIANTS)}")
    return args


def plan_estimate(recipe: str, overrides: list[str]) -> dict:
    """`rlhf plan`'s peak per device and host memory for the variant, in MiB (or the error)."""
    from rlhf.cli.main import resolve_recipe
    from rlhf.config.loader import load_recipe
    from rlhf.plan.layout import layout_of, plan_recipe
    from rlhf.plan.report import summarize

    try:
        config = load_recipe(resolve_recipe(recipe), overrides)
        summary = summarize(plan_recipe(config, layout_of(config, None, None)))
    except Exception as error:  # noqa: BLE001 - an estimate that fails must not hide the measurement
        return {"error": f"{type(error).__name__}: {error}"}
    return {"peak_mib": round(summary["peak_gib"] * 1024, 1), "host_mib": round(summary["host_gib"] * 1024, 1),
            "devices": summary["layout"]["devices"], "peak_phase": summary["peak_phase"]}


def measure(recipe: str, work_dir: Path, args: argparse.Namespace) -> dict:
    """Run one recipe's tiny variant and summarise its memory."""
    overrides = [*tiny_overrides(recipe, work_dir), f"trainer.total_steps={args.steps}"]
    command = [sys.executable, "-m", "rlhf.cli.main", "train", recipe, *overrides]
    print(f"{recipe}: running {args.steps} steps", flush=True)
    run_dir = work_dir / "run"
    watch = watch_run(command, run_dir / "metrics.jsonl", work_dir / "train.log", interval_s=args.interval, timeout_s=args.timeout, env=training_env())
    if watch.returncode != 0:
        print((work_dir / "train.log").read_text()[-3000:], file=sys.stderr)
    peaks = sorted(watch.process_peaks.items(), key=lambda item: item[1]["hwm"], reverse=True)
    main = next((peak for _, peak in peaks if peak["name"] == "main"), {"hwm": 0})
    return {
        "recipe": recipe, "returncode": watch.returncode, "seconds": round(watch.seconds, 1), "steps": args.steps,
        "main_peak_mib": round(main["hwm"] / MIB, 1),
        "tree_peak_sum_mib": round(sum(peak["hwm"] for _, peak in peaks) / MIB, 1),
        "tree_rss_max_mib": round(max((s["tree_rss"] for s in watch.samples), default=0) / MIB, 1),
        "processes": len(peaks), "left_behind": watch.left_behind,
        "process_peaks_mib": [{"pid": pid, "name": peak["name"], "hwm_mib": round(peak["hwm"] / MIB, 1)} for pid, peak in peaks],
        "plan": plan_estimate(recipe, overrides),
        "overrides": overrides,
    }


def table(rows: list[dict]) -> str:
    """One line per recipe (MiB)."""
    lines = [f"{'recipe':<28} {'exit':>4} {'s':>6} {'main peak':>10} {'tree sum':>9} {'tree max':>9} {'procs':>5} {'plan/dev':>9}"]
    for row in rows:
        plan = row["plan"].get("peak_mib")
        lines.append(
            f"{row['recipe']:<28} {row['returncode']:>4} {row['seconds']:>6.0f} {row['main_peak_mib']:>10.0f} {row['tree_peak_sum_mib']:>9.0f} "
            f"{row['tree_rss_max_mib']:>9.0f} {row['processes']:>5} {'-' if plan is None else f'{plan:.0f}':>9}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for recipe in args.recipes:
        with tempfile.TemporaryDirectory(prefix=f"recipe-memory-{recipe}-") as work_dir:
            rows.append(measure(recipe, Path(work_dir), args))
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "interval_s": args.interval, "recipes": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if any(row["returncode"] != 0 for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
