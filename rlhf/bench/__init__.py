"""Benchmark rlhf against TRL's GRPOTrainer and a plain-PyTorch floor (`scripts/bench_vs_trl.py`).

Each arm runs in its own process (:mod:`rlhf.bench.worker`), so no arm inherits another's
global torch state; the driver interleaves their steps and reports medians
(:mod:`rlhf.bench.report`) and each phase's peak memory (:mod:`rlhf.bench.memory`). TRL is
imported only by :mod:`rlhf.bench.arm_trl`.

Memory and leaks of whole runs, watched from outside (:mod:`rlhf.bench.monitor` over
:mod:`rlhf.bench.procs`): `scripts/soak.py` (:mod:`rlhf.bench.soak`) and
`scripts/recipe_memory.py` over the recipes' tiny CPU variants (:mod:`rlhf.bench.tiny_recipes`).
"""
