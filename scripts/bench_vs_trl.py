"""Benchmark rlhf against TRL's GRPOTrainer and a plain-PyTorch floor.

    python scripts/bench_vs_trl.py [--config tiny|small|large] [--threads 2] [--arms rlhf,trl,floor]
        [--warmup 2] [--rounds 3] [--steps-per-round 2] [--out bench_vs_trl.json]
    python scripts/bench_vs_trl.py --mode accuracy [--max-steps 600] [--eval-every 25]
        [--target-gain 0.15 | --target-accuracy 0.6] [--warm-start runs/bench-sft]

Throughput mode: every arm loads the same randomly initialised char-level Llama from disk, takes
the same number of 2-digit-addition prompts per step, samples the same number of responses per
prompt up to the same length, and makes one AdamW step (same lr, betas, clip) per generation
batch, without KL:
  rlhf   the quickstart recipe through `build_run` / `build_roles` and `rl_step` (rlhf_harness.bench.arm_rlhf)
  trl    `trl.GRPOTrainer.train()`, paused between steps by a callback (rlhf_harness.bench.arm_trl)
  floor  HF `generate` + one forward/backward/step over the same tokens (rlhf_harness.bench.arm_floor)
Each arm runs in its own process; after the warm-up the arms take turns, `--steps-per-round`
steps at a time. Prints medians of seconds per step and tokens per second (prompt + response
tokens of the step / step time), the share of the step spent in `generate`, and the ratios
rlhf/TRL (throughput) and rlhf/floor (step time); writes everything, every step included, as JSON.

Accuracy mode: training wall time until the held-out greedy accuracy reaches a target, rlhf vs
TRL with the quickstart recipe's settings from one shared SFT warm start (rlhf_harness.bench.accuracy).
The model is the quickstart's (`--config` does not apply).

Timings on a machine shared with other work are noisy: compare runs taken together, not alone.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from rlhf_harness.bench.settings import MODEL_SIZES
    from rlhf_harness.bench.worker import ARMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("throughput", "accuracy"), default="throughput", help="what to measure")
    parser.add_argument("--config", choices=tuple(MODEL_SIZES), default="small", help="model size (throughput mode); 'tiny' is for tests")
    parser.add_argument("--arms", default=None, help="comma-separated arms (default: rlhf,trl,floor; accuracy mode: rlhf,trl)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of every arm")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype of every arm (bfloat16: autocast)")
    parser.add_argument("--seed", type=int, default=0, help="seed of initial weights, prompt order and sampling")
    parser.add_argument("--out", default="bench_vs_trl.json", help="JSON output file")
    throughput = parser.add_argument_group("throughput mode")
    throughput.add_argument("--warmup", type=int, default=2, help="untimed steps per arm before the rounds")
    throughput.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    throughput.add_argument("--steps-per-round", type=int, default=2, help="steps each arm takes per round")
    throughput.add_argument("--prompts", type=int, default=16, help="prompts per step")
    throughput.add_argument("--samples", type=int, default=8, help="responses per prompt")
    throughput.add_argument("--max-new-tokens", type=int, default=32, help="longest response")
    throughput.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (constant)")
    accuracy = parser.add_argument_group("accuracy mode")
    accuracy.add_argument("--max-steps", type=int, default=600, help="step cap per arm (and the cosine schedule's horizon)")
    accuracy.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations")
    accuracy.add_argument("--eval-size", type=int, default=200, help="held-out sums evaluated greedily")
    accuracy.add_argument("--target-gain", type=float, default=0.15, help="target = start accuracy + this")
    accuracy.add_argument("--target-accuracy", type=float, default=None, help="absolute target (overrides --target-gain)")
    accuracy.add_argument("--warm-start", default=None, help="directory of the SFT warm start (reused when it holds sft_model/)")
    args = parser.parse_args(argv)
    default_arms = "rlhf,trl,floor" if args.mode == "throughput" else "rlhf,trl"
    args.arms = list(dict.fromkeys(name.strip() for name in (args.arms or default_arms).split(",") if name.strip()))
    valid = tuple(ARMS) if args.mode == "throughput" else ("rlhf", "trl")
    unknown = [name for name in args.arms if name not in valid]
    if unknown or not args.arms:
        parser.error(f"--arms: {', '.join(unknown) or 'none given'}; valid arms in {args.mode} mode: {', '.join(valid)}")
    return args


def throughput_mode(args: argparse.Namespace, work_dir: Path, processes: dict) -> dict:
    from rlhf_harness.bench.report import throughput_table
    from rlhf_harness.bench.settings import BenchSettings
    from rlhf_harness.bench.throughput import run_throughput

    model_dir = work_dir / "initial_model"
    # one worker writes the checkpoint while the others are still importing their libraries
    parameters = next(iter(processes.values())).make_model(str(model_dir), args.config, args.seed)
    settings = BenchSettings(
        model_dir=str(model_dir), work_dir=str(work_dir), prompts=args.prompts, samples=args.samples, max_new_tokens=args.max_new_tokens,
        lr=args.lr, total_steps=args.warmup + args.rounds * args.steps_per_round, threads=args.threads, seed=args.seed, dtype=args.dtype,
    )
    print(
        f"config {args.config} ({parameters / 1e6:.2f}M parameters): {args.prompts} prompts x {args.samples} samples, "
        f"{args.max_new_tokens} new tokens, {args.threads} threads, {args.dtype}; {args.warmup} warm-up steps, "
        f"then {args.rounds} rounds x {args.steps_per_round} steps per arm (medians)", flush=True,
    )
    result = run_throughput(processes, settings, args.warmup, args.rounds, args.steps_per_round)
    print(throughput_table(result), flush=True)
    return {"config": args.config, "parameters": parameters, "settings": asdict(settings),
            "warmup": args.warmup, "rounds": args.rounds, "steps_per_round": args.steps_per_round, **result}


def accuracy_mode(args: argparse.Namespace, work_dir: Path, processes: dict) -> dict:
    from rlhf_harness.bench.accuracy import (
        quickstart_settings,
        run_accuracy,
        warm_start_checkpoint,
    )
    from rlhf_harness.bench.report import accuracy_table

    model_dir = warm_start_checkpoint(Path(args.warm_start or work_dir / "sft-run"), args.threads, args.seed)
    settings = quickstart_settings(model_dir, work_dir, args.threads, args.seed, args.max_steps)
    print(
        f"time to accuracy from {model_dir}: {settings.prompts} prompts x {settings.samples} samples, {settings.max_new_tokens} new tokens, "
        f"lr {settings.lr:g} ({settings.lr_schedule}, {settings.warmup_steps} warm-up steps), at most {settings.total_steps} steps", flush=True,
    )
    result = run_accuracy(processes, settings, args.eval_size, args.eval_every, args.target_gain, args.target_accuracy)
    print(accuracy_table(result), flush=True)
    return {"settings": asdict(settings), "eval_every": args.eval_every, **result}


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark the arguments ask for; returns what it writes to `--out`."""
    args = parse_args(argv)
    from rlhf_harness.bench.report import environment
    from rlhf_harness.bench.worker import arm_processes, prepare_environment

    prepare_environment()

    # the workers start importing their libraries at once
    with tempfile.TemporaryDirectory(prefix="bench-vs-trl-") as work, arm_processes(args.arms) as processes:
        mode = throughput_mode if args.mode == "throughput" else accuracy_mode
        result = {"mode": args.mode, "arms_run": args.arms, "environment": environment(), **mode(args, Path(work), processes)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
