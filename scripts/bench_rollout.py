"""Rollout speed: the HF engine's decode loops against `transformers`' `model.generate`.

All three sample the same 16 prompts x 8 with a KV cache and stop at EOS: `generate`, the
dynamic loop (`decode`: drops each finished row at once, asks the device after every token)
and the static loop (`decode_static`: preallocated cache, one look every 8 steps, rows dropped
in power-of-two buckets). Two cases: responses that all run to the budget (a
random model: EOS is rare) and responses of mixed lengths (the EOS logit raised, so most rows
stop early and a few run long, as in RL on real tasks). Interleaved repetitions, medians.

Example:
    python scripts/bench_rollout.py --hidden 256 --layers 4 --threads 2 --out bench_rollout.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GenerationConfig

from rlhf.data.arithmetic import arithmetic_rows
from rlhf.data.prompts import prompt_batch
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.decode import decode
from rlhf.rollout.static_decode import decode_static


def time_case(model, tokenizer, prompts, max_new_tokens: int, repeats: int) -> dict:
    """Median seconds of `generate`, `decode` and `decode_static` on `prompts`, and the
    response lengths."""
    eos, pad = [tokenizer.eos_token_id], tokenizer.pad_token_id
    ids, mask = prompts["prompt_ids"], prompts["prompt_mask"]
    config = GenerationConfig(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad)
    sampling = SamplingParams(max_new_tokens=max_new_tokens)
    loops = {"generate": lambda: model.generate(input_ids=ids, attention_mask=mask, generation_config=config),
             "decode": lambda: decode(model, ids, mask, sampling, eos, pad),
             "static": lambda: decode_static(model, ids, mask, sampling, eos, pad)}
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    lengths = []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first round warms up
            for name, loop in loops.items():
                start = time.perf_counter()
                out = loop()
                seconds[name].append(time.perf_counter() - start)
            lengths.append(response_mask_from_ids(out.response_ids, eos).sum(dim=1).float())
    lengths = torch.cat(lengths)
    medians = {name: statistics.median(values[1:]) for name, values in seconds.items()}
    return {**{f"{name}_s": value for name, value in medians.items()}, "speedup": medians["generate"] / medians["decode"],
            "static_vs_decode": medians["decode"] / medians["static"],
            "mean_length": lengths.mean().item(), "max_length": lengths.max().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--eos-bias", type=float, default=3.0, help="added to the EOS logit in the mixed-length case")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    path = build_tiny_model(Path(tempfile.mkdtemp()) / "model", hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                            intermediate_size=2 * args.hidden, max_position_embeddings=128, seed=0)
    model, tokenizer = load_causal_lm(str(path), torch.device("cpu")).eval(), load_tokenizer(str(path))
    prompts = prompt_batch(arithmetic_rows("train", 2, 0.1, 0)[:16], tokenizer).repeat_interleave(8)
    results = {"to the budget": time_case(model, tokenizer, prompts, args.max_new_tokens, args.repeats)}
    bias = args.eos_bias * torch.nn.functional.one_hot(torch.tensor(tokenizer.eos_token_id), model.config.vocab_size)
    model.lm_head.register_forward_hook(lambda module, inputs, output: output + bias)
    results["mixed lengths"] = time_case(model, tokenizer, prompts, args.max_new_tokens, args.repeats)
    print(f"{'case':<14} {'generate s':>10} {'decode s':>9} {'static s':>9} {'decode/gen':>10} {'static/dec':>10} {'mean len':>9} {'max len':>8}")
    for case, row in results.items():
        print(f"{case:<14} {row['generate_s']:>10.3f} {row['decode_s']:>9.3f} {row['static_s']:>9.3f} {row['speedup']:>9.2f}x"
              f" {row['static_vs_decode']:>9.2f}x {row['mean_length']:>9.1f} {row['max_length']:>8.0f}")
    if args.out:
        args.out.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)}, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
