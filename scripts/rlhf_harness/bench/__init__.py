"""Benchmark rlhf against TRL's GRPOTrainer and a plain-PyTorch floor: on a CPU with interleaved
arms (`scripts/bench_vs_trl.py`), and at Qwen2.5 shapes on a GPU, the arms one at a time
(`scripts/bench_gpu.py`: :mod:`rlhf_harness.bench.shapes`, :mod:`rlhf_harness.bench.sequential`,
:mod:`rlhf_harness.bench.mfu`), where a `vllm` arm runs rlhf with its vLLM rollout engine.

Each arm runs in its own process (:mod:`rlhf_harness.bench.worker`), so no arm inherits
another's global torch state; the driver interleaves their steps and reports medians
(:mod:`rlhf_harness.bench.report`) and each phase's peak memory
(:mod:`rlhf_harness.bench.memory`). TRL is imported only by :mod:`rlhf_harness.bench.arm_trl`.

Memory and leaks of whole runs, watched from outside (:mod:`rlhf_harness.bench.monitor` over
:mod:`rlhf_harness.procs`): `scripts/soak.py` (:mod:`rlhf_harness.bench.soak`) and
`scripts/recipe_memory.py` over the recipes' tiny CPU variants
(:mod:`rlhf_harness.tiny_recipes`).
"""
