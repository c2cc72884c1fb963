"""Benchmark the trainer → rollout weight sync of the hybrid engine on this machine.

    python scripts/bench_weight_sync.py [--config qwen2.5-0.5b|tiny] [--bucket-mb 16 64 256]
        [--repeats 3] [--out runs/bench-weight-sync.json]

Builds a randomly initialised model from a Qwen2.5-like config (no download), wraps it in the
DeepSpeed engine with ZeRO-3 (one process, gloo: the gathers are real, the partitions are the
whole model), gives an HF rollout engine its own copy, and times `rollout.update_weights(
engine.named_weights())` (what `time/weight_sync_s` measures) for each bucket size. Prints a
table (seconds, GB/s, peak RSS growth during the sync) and writes JSON. Peak RSS is sampled
every 5 ms, so it is an upper bound of the sync's own extra memory (one bucket at a time).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import threading
import time
from pathlib import Path

import psutil
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

CONFIGS = {
    # Qwen2.5-0.5B's shape (494M parameters, tied embeddings)
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "tiny": dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=1000, tie_word_embeddings=True),
}


class PeakRSS:
    """The highest resident set size seen while the context is open, sampled every 5 ms."""

    def __enter__(self):
        self.process, self.peak, self.running = psutil.Process(), 0, True
        self.start = self.process.memory_info().rss
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()

    @property
    def growth_mb(self) -> float:
        return max(0, self.peak - self.start) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="qwen2.5-0.5b")
    parser.add_argument("--bucket-mb", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="runs/bench-weight-sync.json")
    args = parser.parse_args()
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    from rlhf.engines.base import OptimConfig
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine
    from rlhf.rollout.hf import HFRolloutEngine

    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**CONFIGS[args.config]))
    parameters = sum(p.numel() for p in model.parameters())
    rollout_model = copy.deepcopy(model)
    tokenizer = type("Tok", (), {"eos_token_id": 0, "pad_token_id": 0})()
    rollout = HFRolloutEngine(rollout_model, tokenizer)
    results = []
    engine = DeepSpeedEngine(model, OptimConfig(lr=1e-5), zero_stage=3)
    for bucket_mb in args.bucket_mb:
        engine.weight_bucket_bytes = bucket_mb * 2**20
        seconds, growth = [], []
        for _ in range(args.repeats + 1):  # the first is a warm-up
            with PeakRSS() as rss:
                start = time.perf_counter()
                moved = rollout.update_weights(engine.named_weights())
                seconds.append(time.perf_counter() - start)
            growth.append(rss.growth_mb)
        median = statistics.median(seconds[1:])
        results.append({"bucket_mb": bucket_mb, "seconds": median, "bytes": moved, "gb_per_s": moved / median / 1e9, "peak_rss_growth_mb": max(growth[1:])})
    print(f"weight sync, {args.config} ({parameters / 1e6:.0f}M parameters, {moved / 2**20:.0f} MiB fp32), ZeRO-3, 1 rank, CPU, torch threads {torch.get_num_threads()}")
    print(f"{'bucket MB':>10} {'seconds':>9} {'GB/s':>7} {'peak RSS growth MB':>19}")
    for row in results:
        print(f"{row['bucket_mb']:>10} {row['seconds']:>9.3f} {row['gb_per_s']:>7.2f} {row['peak_rss_growth_mb']:>19.0f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"config": args.config, "parameters": parameters, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
