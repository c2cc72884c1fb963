"""Peak memory and time of one actor update at a real LLM vocabulary: the LM head fused with
log-probabilities and entropy in chunks (:mod:`rlhf.algorithms.head_logprobs`) against
projecting every token's logits at once.

    python scripts/bench_logprobs.py [--vocab 151936] [--rows 32] [--response 128] [--repeats 3] [--out bench_logprobs.json]

Each arm runs in a fresh process (so its peak resident memory is its own): a Llama-shaped
model with a small body (hidden 128, 2 layers) and the given vocabulary, one warm-up update,
then `--repeats` timed updates of `--rows` sequences (16 prompt + `--response` response tokens)
in one micro-batch, as `rlhf train`'s actor runs them (policy loss, entropy logged). Prints a
table and writes JSON. CPU or GPU (on CUDA it reports torch's peak allocated memory as well).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=151_936, help="vocabulary size (Qwen2.5's by default)")
    parser.add_argument("--rows", type=int, default=32, help="sequences in the micro-batch")
    parser.add_argument("--response", type=int, default=128, help="response tokens per sequence")
    parser.add_argument("--repeats", type=int, default=3, help="timed updates per arm")
    parser.add_argument("--out", type=Path, default=Path("bench_logprobs.json"))
    parser.add_argument("--arm", choices=["fused", "whole"], help=argparse.SUPPRESS)  # one arm, in its own process
    return parser.parse_args(argv)


def run_arm(args: argparse.Namespace) -> dict:
    """One arm in this process: the update's median seconds and the peak memory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import rlhf.workers.forward as forward
    from rlhf.config.loader import load_recipe
    from rlhf.data.batch import Batch
    from rlhf.workers.build import build_actor

    if args.arm == "whole":
        forward.FUSED_HEAD_MODELS = frozenset()  # every token's logits at once, as before the fused head
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shape = LlamaConfig(vocab_size=args.vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, max_position_embeddings=16 + args.response, tie_word_embeddings=False)
    model = LlamaForCausalLM(shape).to(device)
    rows = args.rows
    config = load_recipe(None, ["model.path=bench", f"actor.mini_batch_size={rows}", f"actor.micro_batch_size={rows}", "actor.lr=1e-5"])
    actor = build_actor(config, model)
    generator = torch.Generator().manual_seed(0)
    batch = Batch({
        "prompt_ids": torch.randint(0, args.vocab, (rows, 16), generator=generator), "prompt_mask": torch.ones(rows, 16, dtype=torch.long),
        "response_ids": torch.randint(0, args.vocab, (rows, args.response), generator=generator),
        "response_mask": torch.ones(rows, args.response, dtype=torch.long),
        "advantages": torch.randn(rows, args.response, generator=generator),
    })
    actor.update_policy(batch)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        actor.update_policy(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    result = {"arm": args.arm, "device": device.type, "update_s": statistics.median(seconds), "seconds": seconds,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.arm:
        print(json.dumps(run_arm(args)))
        return 0
    results = {}
    for arm in ("whole", "fused"):
        command = [sys.executable, __file__, "--arm", arm, "--vocab", str(args.vocab), "--rows", str(args.rows), "--response", str(args.response),
                   "--repeats", str(args.repeats)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
        results[arm] = json.loads(done.stdout.strip().splitlines()[-1])
    logits_mb = args.rows * args.response * args.vocab * 4 / 2**20
    print(f"one update, {args.rows} x (16 + {args.response}) tokens, vocabulary {args.vocab} "
          f"(all float32 logits at once: {logits_mb:.0f} MB), {results['fused']['device']}")
    print(f"{'arm':<8}{'update s':>10}{'peak RSS MB':>14}" + (f"{'peak CUDA MB':>14}" if "peak_cuda_mb" in results["fused"] else ""))
    for arm, result in results.items():
        cuda = f"{result['peak_cuda_mb']:>14.0f}" if "peak_cuda_mb" in result else ""
        print(f"{arm:<8}{result['update_s']:>10.3f}{result['peak_rss_mb']:>14.0f}{cuda}")
    whole, fused = results["whole"], results["fused"]
    print(f"fused / whole: time {fused['update_s'] / whole['update_s']:.2f}x, peak RSS {fused['peak_rss_mb'] / whole['peak_rss_mb']:.2f}x")
    args.out.write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
                                    "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
