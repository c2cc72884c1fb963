"""Benchmark rlhf against TRL's GRPOTrainer and a plain-PyTorch floor (`scripts/bench_vs_trl.py`).

Each arm runs in its own process (:mod:`rlhf.bench.worker`), so no arm inherits another's
global torch state; the driver interleaves their steps and reports medians
(:mod:`rlhf.bench.report`). TRL is imported only by :mod:`rlhf.bench.arm_trl`.
"""
