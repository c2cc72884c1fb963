"""What every arm of the benchmark shares: prompts, the reward, the record of one step, the
initial model and the held-out accuracy they are all judged by.

Notation: B = prompts × samples sequences per step, P prompt tokens (left-padded), R response
tokens (right-padded after the first EOS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open

from rlhf.data.arithmetic import arithmetic_rows
from rlhf.models.tiny import build_tiny_model
from rlhf.rewards.arithmetic import arithmetic_score

from rlhf_harness.bench.settings import MAX_POSITIONS, MODEL_SIZES


@dataclass
class StepRecord:
    """One timed step of one arm."""

    seconds: float
    """Wall time of the whole step: generate, score, forward, backward, optimiser step."""
    tokens: int
    """Prompt tokens + response tokens (up to and including EOS) of the step's B sequences."""
    generate_seconds: float | None
    """Of which in `generate` (None where the arm cannot see it)."""
    reward_mean: float
    response_length_mean: float
    update_seconds: float | None = None
    """Of the step's `seconds`, those of the policy update: forward, backward (every
    micro-batch) and the optimiser step (None where the arm does not report it)."""
    phases: dict[str, float] = field(default_factory=dict)
    """Further phase timings the arm reports (rlhf's `time/*_s`)."""
    peak_memory_mib: dict[str, float] = field(default_factory=dict)
    """Peak memory (MiB) per phase and of the whole `step`
    (:class:`rlhf_harness.bench.memory.PhasePeaks`: RSS of the arm's process on the CPU, tensor
    bytes allocated on a GPU)."""


def train_rows() -> list[dict]:
    """The training prompts of 2-digit addition, e.g. {"prompt": "07+45=", "ground_truth": "52"}."""
    return arithmetic_rows("train", digits=2)


def test_rows(size: int) -> list[dict]:
    """The first `size` held-out sums (disjoint from `train_rows`)."""
    return arithmetic_rows("test", digits=2)[:size]


def scores(responses: list[str], ground_truths: list[str]) -> list[float]:
    """The reward of every arm: rlhf's `arithmetic` source (exact match, whitespace stripped)."""
    return [arithmetic_score(text, truth) for text, truth in zip(responses, ground_truths, strict=True)]


def build_initial_model(out_dir: str | Path, size: str | dict, seed: int) -> int:
    """Save a randomly initialised model with the char tokenizer to `out_dir`: `size` names one
    of `MODEL_SIZES`, or is a dict of `build_tiny_model` arguments (a model shape); returns its
    number of parameters (tied embeddings counted once)."""
    shape = {"max_position_embeddings": MAX_POSITIONS, **(MODEL_SIZES[size] if isinstance(size, str) else size)}
    build_tiny_model(out_dir, seed=seed, **shape)
    # counted from the file, without loading the model again (save_pretrained stores a tied tensor once)
    with safe_open(str(Path(out_dir) / "model.safetensors"), framework="pt") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())  # noqa: SIM118 (safe_open has keys(), no __iter__)


def mask_after_eos(response_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """[B, R] long mask: 1 up to and including each row's first EOS, 0 after it."""
    is_eos = (response_ids == eos_token_id).long()
    return (is_eos.cumsum(dim=-1) - is_eos == 0).long()


@torch.no_grad()
def greedy_accuracy(model: torch.nn.Module, tokenizer, rows: list[dict], max_new_tokens: int, batch_size: int = 256) -> float:
    """Share of `rows` whose greedy response earns reward 1: the same yardstick for every arm."""
    was_training = model.training
    model.eval()
    correct = 0.0
    try:
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            encoded = tokenizer([row["prompt"] for row in chunk], return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            output = model.generate(
                **encoded, do_sample=False, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            )
            # finished rows are padded with pad_token_id after EOS; both are special and skipped
            texts = tokenizer.batch_decode(output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            correct += sum(scores(texts, [row["ground_truth"] for row in chunk]))
    finally:
        model.train(was_training)
    return correct / max(1, len(rows))
