"""Model shapes of the GPU benchmark (`scripts/bench_gpu.py`) and the run each is measured with.

The Qwen2.5 shapes are the public configurations of Qwen2.5-0.5B and Qwen2.5-1.5B (the rows of
:data:`rlhf.plan.shapes.KNOWN_MODELS`; the base and Instruct models share them), randomly
initialised as Qwen2 (q/k/v biases, grouped-query attention, tied embeddings) over the
character tokenizer, with the embedding padded to the real 151,936-token vocabulary: the LM
head and the logits have their real size although the tokenizer only ever produces its first
~100 ids (a random model samples the others, which decode to nothing). `tiny` is the same
layout at toy widths, for the CPU smoke test: its vocabulary is padded too, but only to 1,024
ids, ten times the tokenizer's (at 151,936 the logits alone would triple its step time on a CPU).

Plain data: the driver imports this without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.plan.shapes import KNOWN_MODELS

MAX_POSITIONS = 4096
"""Rotary positions of every benchmark shape: far above any prompt + response it is run with
(the rotary embedding has no weights, so this changes neither the parameters nor the speed)."""


@dataclass(frozen=True)
class RunDefaults:
    """The numbers a shape is measured with unless the command line says otherwise."""

    prompts: int
    """Prompts per step."""
    samples: int
    """Responses per prompt."""
    max_new_tokens: int
    """Longest response (a random model rarely stops earlier)."""
    micro_batch_size: int
    """Sequences per forward/backward of the update."""
    warmup: int
    """Untimed steps per arm before the timed ones."""
    steps: int
    """Timed steps per arm (their medians are reported)."""
    threads: int
    """torch CPU threads of every arm."""


@dataclass(frozen=True)
class BenchShape:
    """One `--shape`: the model `build_tiny_model` writes and its default run."""

    model: dict
    """`rlhf.models.tiny.build_tiny_model` keyword arguments."""
    run: RunDefaults


def qwen2_model(known_model: str) -> dict:
    """`build_tiny_model` arguments of a `KNOWN_MODELS` Qwen2 shape (vocabulary included)."""
    shape = KNOWN_MODELS[known_model]
    return {
        "model_type": "qwen2", "hidden_size": shape.hidden_size, "num_layers": shape.num_layers, "num_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads, "intermediate_size": shape.intermediate_size, "vocab_size": shape.vocab_size,
        "tie_word_embeddings": shape.tie_word_embeddings, "max_position_embeddings": MAX_POSITIONS,
    }


# the first GPU measurement's settings: 32 prompts x 8 samples of 6-token sums, 128 new
# tokens, micro-batches of 32 sequences, 2 warm-up steps, medians of 4 steps
GPU_RUN = RunDefaults(prompts=32, samples=8, max_new_tokens=128, micro_batch_size=32, warmup=2, steps=4, threads=4)

SHAPES: dict[str, BenchShape] = {
    # seconds on two CPU cores; two micro-batches per update
    "tiny": BenchShape(
        # head_dim 32: vLLM's CPU attention has no kernel for 8 or 16
        {**qwen2_model("Qwen/Qwen2.5-0.5B-Instruct"), "hidden_size": 64, "num_layers": 2, "num_heads": 2,
         "num_key_value_heads": 1, "intermediate_size": 128, "vocab_size": 1024},
        # one thread: a toy is overhead-bound, and two threads on two busy cores stall each other
        RunDefaults(prompts=4, samples=4, max_new_tokens=8, micro_batch_size=8, warmup=1, steps=2, threads=1),
    ),
    "qwen2.5-0.5b": BenchShape(qwen2_model("Qwen/Qwen2.5-0.5B-Instruct"), GPU_RUN),
    "qwen2.5-1.5b": BenchShape(qwen2_model("Qwen/Qwen2.5-1.5B-Instruct"), GPU_RUN),
}
"""`--shape` name -> model and default run."""
