"""Soak test: a long run of the tiny recipe, with evaluation and checkpoints every
few steps, watched for leaks of memory, file descriptors and processes.

    python scripts/soak.py [--steps 200] [--every 10] [--sft-steps 100] [--warmup 20]
        [--max-growth-mib 32] [--interrupt-at-step N] [--out soak.json] [key=value ...]

Runs `rlhf train quickstart` (or `--recipe`) as a subprocess with trainer.total_steps=STEPS and
trainer.eval_every = save_every = sample_every = EVERY, and samples it from outside every
`--interval` seconds (rlhf_harness.bench.monitor): resident memory (VmRSS of the main process and of its
whole tree), open file descriptors, child processes, keyed by the last step in metrics.jsonl.
Prints RSS at step 1, after the warm-up and at the end, the growth per 100 steps after the warm-up
(least-squares slope), descriptors at start and end, and processes left after exit; writes it
all, every sample included, as JSON.

Exit status 1 (a leak) when, after the warm-up, RSS grows more than `--max-growth-mib` per 100
steps, the fewest open descriptors in the last `--window` steps exceed the fewest in the first
`--window` steps after the warm-up, any process of the run outlives it by 15 s, or the run
fails. The default bound, 32 MiB per 100 steps, is 5% of the run's ~660 MiB RSS: in clean
200-step runs on the reference machine (2 CPU cores) RSS stays within a band of ~25 MiB
(between 635 and 690 MiB over three runs: allocator caches, an evaluation's buffers) and the
slope within ±4 MiB per 100 steps; a leak of one batch, a metrics history or a checkpoint's
buffers per step shows far above. Slopes over fewer than 50 steps are reported, not judged.

`--interrupt-at-step N` sends SIGINT (Ctrl-C) to the run's process group once step N is
logged: the run must then finish the step, checkpoint, exit with 130 and leave nothing behind.
`--sft-steps 0` skips the SFT warm start (the reward is then almost always 0). `--tiny` runs
another recipe's tiny CPU variant (e.g. `--recipe gsm8k_grpo_qwen2.5-0.5b --tiny`: verifier
worker processes). Linux only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from rlhf_harness.bench.monitor import training_env, watch_run
from rlhf_harness.bench.soak import report, summarise
from rlhf_harness.tiny_recipes import tiny_overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="further key=value overrides of the recipe")
    parser.add_argument("--recipe", default="quickstart", help="a shipped recipe name or a YAML path")
    parser.add_argument("--tiny", action="store_true", help="the recipe's tiny CPU variant (rlhf_harness.tiny_recipes: local data, tiny models)")
    parser.add_argument("--steps", type=int, default=200, help="RL steps (trainer.total_steps)")
    parser.add_argument("--every", type=int, default=10, help="steps between evaluations and between checkpoints")
    parser.add_argument("--sft-steps", type=int, default=100, help="SFT warm-start steps at most (0: no SFT)")
    parser.add_argument("--warmup", type=int, default=20, help="steps before memory growth is measured")
    parser.add_argument("--window", type=int, default=None, help="steps of the first and last fd windows (default 2 x --every)")
    parser.add_argument("--max-growth-mib", type=float, default=32.0, help="RSS growth per 100 steps after the warm-up that fails")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples")
    parser.add_argument("--interrupt-at-step", type=int, default=None, help="send SIGINT (Ctrl-C) once this step is logged")
    parser.add_argument("--timeout", type=float, default=3600.0, help="kill the run after this many seconds")
    parser.add_argument("--run-dir", default=None, help="the run's directory (default: a temporary one, removed)")
    parser.add_argument("--out", default="soak.json", help="JSON output file")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.every < 1 or not 0 <= args.warmup < args.steps:
        parser.error("need --steps >= 1, --every >= 1 and 0 <= --warmup < --steps")
    if args.run_dir and (Path(args.run_dir) / "metrics.jsonl").exists():
        parser.error(f"--run-dir {args.run_dir} holds a run already: the soak would resume it instead of starting afresh")
    args.window = args.window or 2 * args.every
    return args


def train_command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """`rlhf train` with the soak's overrides (the caller's last, so they win)."""
    sft = [f"sft.max_steps={args.sft_steps}"] if args.sft_steps else ["sft.enabled=false"]
    tiny = tiny_overrides(args.recipe, run_dir / "tiny") if args.tiny else []
    return [
        sys.executable, "-m", "rlhf.cli.main", "train", args.recipe, *tiny, f"trainer.total_steps={args.steps}",
        f"trainer.eval_every={args.every}", f"trainer.save_every={args.every}", f"trainer.sample_every={args.every}", f"trainer.output_dir={run_dir}", *sft, *args.overrides,
    ]


def soak(args: argparse.Namespace, run_dir: Path) -> dict:
    """Run, watch, summarise; returns what goes to `--out`."""
    command = train_command(args, run_dir)
    print("running: " + " ".join(command[2:])[:1000], flush=True)
    watch = watch_run(
        command, run_dir / "metrics.jsonl", run_dir / "soak.log", interval_s=args.interval,
        interrupt_at_step=args.interrupt_at_step, timeout_s=args.timeout, env=training_env(),
    )
    summary = summarise(
        watch, steps=args.steps, warmup=args.warmup, window=args.window, max_growth_mib=args.max_growth_mib,
        expect_interrupt=args.interrupt_at_step is not None,
    )
    if watch.returncode not in (0, 130):
        print((run_dir / "soak.log").read_text()[-3000:], file=sys.stderr)
    return {
        "command": command[2:], "steps": args.steps, "every": args.every, "sft_steps": args.sft_steps, "warmup": args.warmup,
        "window": args.window, "max_growth_mib": args.max_growth_mib, "interval_s": args.interval, "summary": summary,
        "process_peaks": watch.process_peaks, "samples": watch.samples,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_dir:
        result = soak(args, Path(args.run_dir))
    else:
        with tempfile.TemporaryDirectory(prefix="rlhf-soak-") as run_dir:
            result = soak(args, Path(run_dir))
    print(report(result["summary"], args.max_growth_mib))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 1 if result["summary"]["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
