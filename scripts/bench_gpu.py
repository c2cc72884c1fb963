"""The GPU benchmark: one GRPO step of rlhf, TRL, a plain-PyTorch floor and rlhf with vLLM.

    python scripts/bench_gpu.py [--shape tiny|qwen2.5-0.5b|qwen2.5-1.5b] [--arms rlhf,trl,floor,vllm]
        [--device auto|cpu|cuda] [--dtype float32|bfloat16] [--param-dtype float32|bfloat16] [--prompts 32] [--samples 8]
        [--max-new-tokens 128] [--micro-batch-size 32] [--warmup 2] [--steps 4] [--threads 4]
        [--seed 0] [--peak-tflops X] [--out bench_gpu.json]

Every arm loads the same randomly initialised model of the chosen shape from disk (Qwen2.5
shapes with the real 151,936-token vocabulary over a character tokenizer, see
rlhf_harness.bench.shapes), samples `--samples` responses to each of `--prompts` 2-digit sums
(6 tokens) up to `--max-new-tokens`, and makes one AdamW step per generation batch, over
micro-batches of `--micro-batch-size` sequences whose gradients accumulate, without KL:
  rlhf   the `rlhf train` path (quickstart recipe -> build_run -> rl_step), HF rollout engine
  trl    trl.GRPOTrainer (use_vllm=False), gradient accumulation = steps_per_generation = B / micro
  floor  HF generate + forward/backward per micro-batch + one AdamW step, nothing else
  vllm   the rlhf arm with rollout.engine=vllm (skipped, with the reason, where vllm does not import)
On a GPU the compute is bfloat16 autocast over float32 weights (float32 on a CPU; --dtype
overrides). The model is written once; then the arms run one after another, each alone in a
process of its own (rlhf_harness.bench.sequential): `--warmup` untimed steps, `--steps` timed
steps, medians.

Prints per arm: seconds per step, of which generate and update, tokens per second (prompt +
response tokens / step time), the update's model FLOP rate and MFU (6·N·tokens / update s /
peak; rlhf_harness.bench.mfu), and each phase's peak memory (GPU: bytes allocated by tensors,
reset at every phase boundary, which on the vllm arm include vLLM's KV cache while it is
awake; CPU: resident set size of the arm's process); writes all of it, every step included,
as JSON.
Exit status 1 if an arm failed (the others still run and are written), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from rlhf_harness.bench.shapes import SHAPES
    from rlhf_harness.bench.worker import ARMS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=tuple(SHAPES), default="qwen2.5-1.5b", help="model shape (tiny: the CPU smoke test)")
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms, run in this order")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when torch sees one")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="compute dtype (default: bfloat16 autocast on cuda, float32 on cpu)")
    parser.add_argument("--param-dtype", choices=("float32", "bfloat16"), default="float32",
                        help="weights of the rlhf and vllm arms (model.param_dtype; bfloat16: float32 masters in the optimiser, needs --dtype bfloat16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial weights, prompt order and sampling")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak FLOP/s (in TFLOP/s) for the MFU (default: the GPU's dense bf16 peak)")
    parser.add_argument("--out", default="bench_gpu.json", help="JSON output file")
    run = parser.add_argument_group("run (defaults: the shape's)", "\n".join(
        f"{name}: {shape.run.prompts} prompts x {shape.run.samples} samples, {shape.run.max_new_tokens} new tokens, micro-batches of "
        f"{shape.run.micro_batch_size}, {shape.run.warmup} warm-up + {shape.run.steps} timed steps, {shape.run.threads} thread(s)" for name, shape in SHAPES.items()))
    for option, help_text in (("prompts", "prompts per step"), ("samples", "responses per prompt"), ("max-new-tokens", "longest response"),
                              ("micro-batch-size", "sequences per forward/backward of the update"), ("warmup", "untimed steps per arm"),
                              ("steps", "timed steps per arm"), ("threads", "torch CPU threads of every arm")):
        run.add_argument(f"--{option}", type=int, default=None, help=help_text)
    args = parser.parse_args(argv)
    args.arms = list(dict.fromkeys(name.strip() for name in args.arms.split(",") if name.strip()))
    unknown = [name for name in args.arms if name not in ARMS]
    if unknown or not args.arms:
        parser.error(f"--arms: {', '.join(unknown) or 'none given'}; valid arms: {', '.join(ARMS)}")
    defaults = SHAPES[args.shape].run
    for name in ("prompts", "samples", "max_new_tokens", "micro_batch_size", "warmup", "steps", "threads"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(defaults, name))
    check_numbers(parser, args, SHAPES[args.shape].model["max_position_embeddings"])
    args.device = resolve_device(parser, args.device)
    args.dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.param_dtype == "bfloat16" and args.dtype != "bfloat16":
        parser.error("--param-dtype bfloat16 needs --dtype bfloat16 (bf16 weights compute in bf16)")
    return args


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace, max_positions: int) -> None:
    """Refuse numbers no arm can run with (exit status 2, naming the option)."""
    from rlhf_harness.bench.settings import MAX_PROMPT_TOKENS
    for name in ("prompts", "samples", "max_new_tokens", "micro_batch_size", "steps", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    batch = args.prompts * args.samples
    if batch % args.micro_batch_size:
        parser.error(f"--micro-batch-size ({args.micro_batch_size}) must divide the {batch} sequences of a step (--prompts x --samples)")
    if MAX_PROMPT_TOKENS + args.max_new_tokens > max_positions:
        parser.error(f"--max-new-tokens ({args.max_new_tokens}) + the {MAX_PROMPT_TOKENS} prompt tokens exceed the shape's {max_positions} positions")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        parser.error(f"--peak-tflops must be positive, got {args.peak_tflops}")


def resolve_device(parser: argparse.ArgumentParser, requested: str) -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; 'cuda' without one is a usage error."""
    import torch  # asks the driver for the device count only: no CUDA context in this process

    if requested == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def peak_of(args: argparse.Namespace, workers: dict[str, dict]) -> tuple[float | None, str]:
    """The MFU's peak FLOP/s and where it came from: --peak-tflops, else the GPU's table entry."""
    from rlhf_harness.bench.mfu import peak_flops

    if args.peak_tflops is not None:
        return args.peak_tflops * 1e12, "--peak-tflops"
    names = sorted({worker["device_name"] for worker in workers.values() if worker["memory_kind"] == "cuda_allocated"})
    peak = peak_flops(names[0]) if names else None
    return peak, f"dense bf16 of {names[0]}" if peak else "n/a"


def run_benchmark(args: argparse.Namespace, work_dir: Path) -> dict:
    """Skip what cannot run, run the rest one at a time, add the update rates."""
    from rlhf_harness.bench.mfu import update_rates
    from rlhf_harness.bench.report import environment, gpu_table
    from rlhf_harness.bench.sequential import run_one_at_a_time, unavailable_reason
    from rlhf_harness.bench.settings import BenchSettings
    from rlhf_harness.bench.shapes import SHAPES

    device, dtype = args.device, args.dtype
    skipped = {name: reason for name in args.arms if (reason := unavailable_reason(name))}
    arms = [name for name in args.arms if name not in skipped]
    settings = BenchSettings(
        model_dir=str(work_dir / "initial_model"), work_dir=str(work_dir), prompts=args.prompts, samples=args.samples,
        max_new_tokens=args.max_new_tokens, total_steps=args.warmup + args.steps, threads=args.threads, seed=args.seed, dtype=dtype,
        param_dtype=args.param_dtype, micro_batch_size=args.micro_batch_size, device=device,
    )
    print(
        f"shape {args.shape} on {device} ({dtype}): {args.prompts} prompts x {args.samples} samples, {args.max_new_tokens} new tokens, "
        f"micro-batches of {args.micro_batch_size}; per arm {args.warmup} warm-up + {args.steps} timed steps (medians)"
        + "".join(f"\narm {name}: skipped ({reason})" for name, reason in skipped.items()), flush=True,
    )
    result = run_one_at_a_time(arms, settings, SHAPES[args.shape].model, args.seed, args.warmup, args.steps)
    peak, peak_source = peak_of(args, result["workers"])
    for arm in result["arms"].values():
        arm.update(update_rates(arm["steps"], result["parameters"], peak))
    result = {"shape": args.shape, "model": SHAPES[args.shape].model, "settings": asdict(settings), "warmup": args.warmup,
              "steps_timed": args.steps, "peak_flops": peak, "peak_source": peak_source, "skipped": skipped,
              "environment": environment(), **result}
    if result["parameters"] is not None:
        print(gpu_table(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark the arguments ask for; returns what it writes to `--out`."""
    args = parse_args(argv)
    from rlhf_harness.bench.worker import prepare_environment

    prepare_environment()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as work:
        result = run_benchmark(args, Path(work))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    if result["failed"]:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
