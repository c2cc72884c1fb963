"""The supervised warm start: teach the response format before RL, stop at a target accuracy.

Reasoning-RL recipes (e.g. T1) start RL from an SFT model so that sampled responses earn a
non-zero reward. We train on (prompt, ground truth + EOS) with the loss on response tokens only,
at a *constant* learning rate, and stop as soon as greedy validation accuracy reaches
`sft.stop_at_accuracy`: a fixed step count is fragile across seeds (where accuracy jumps moves),
and a schedule decaying to zero leaves a high-entropy model that RL then makes worse.

A stage stopped by Ctrl-C or SIGTERM saves an SFT checkpoint (:func:`save_sft_checkpoint`:
weights, AdamW, data position, random state); the next launch continues from it exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from rlhf.algorithms.logprobs import logprobs_from_logits
from rlhf.algorithms.losses import masked_mean
from rlhf.config.schema import SFTConfig
from rlhf.controller.run_dir import SFT_STATE
from rlhf.data.batch import Batch, action_mask
from rlhf.data.prompts import PromptStream, sequence_tensor
from rlhf.engines.base import TrainingEngine
from rlhf.workers.forward import response_logits
from rlhf.workers.state import rng_state, set_rng_state

STATE_FILE = SFT_STATE
"""In an SFT checkpoint next to the engine's own files: the step, the data position, the RNG."""


def sft_batch(prompts: Batch, tokenizer) -> Batch:
    """Append `ground_truth + EOS` as right-padded `response_ids [B, R]` to a prompt batch."""
    encoded = tokenizer(list(prompts["ground_truth"]), add_special_tokens=False)["input_ids"]
    answers = [ids + [tokenizer.eos_token_id] for ids in encoded]
    response_ids, response_mask = sequence_tensor(answers, tokenizer.pad_token_id, left=False)
    return Batch(dict(prompts.tensors), dict(prompts.non_tensors)).set("response_ids", response_ids).set("response_mask", response_mask)


def sft_step(engine: TrainingEngine, batch: Batch) -> dict[str, float]:
    """One optimiser step of token-mean negative log-likelihood on the response tokens."""
    engine.module.train()
    with engine.autocast():
        logits = response_logits(engine.module, batch)
    device = logits.device
    nll = -masked_mean(logprobs_from_logits(logits, batch["response_ids"].to(device)), action_mask(batch).to(device).float())
    engine.backward(nll)
    grad_norm = engine.step()
    return {"sft/loss": nll.item(), "sft/grad_norm": grad_norm.item()}


def run_sft(
    engine: TrainingEngine,
    make_batch: Callable[[list[dict]], Batch],
    stream: PromptStream,
    validate: Callable[[], float],
    config: SFTConfig,
    log: Callable[[dict], None],
    *,
    first_step: int = 0,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Train until validation accuracy reaches the target or `max_steps` run out, or `stop()`
    says so after a step.

    Steps: (1) check the stopping rule every `eval_every` steps (and before the first step)
    (2) draw a batch of rows (3) one NLL step on its responses (4) log (5) stop if asked.

    Args:
        make_batch: rows -> SFT batch (prompt and response tensors).
        stream: the training rows in batches (its position continues a stopped stage).
        validate: () -> greedy validation accuracy of the current model.
        log: receives one metrics dict per step and one per validation.
        first_step: optimiser steps already taken (a stopped stage continued).
        stop: polled after each step.
    Returns:
        {"sft/steps", "sft/val_accuracy", "sft/seconds", "sft/stopped"} at the end: steps taken,
        the last validation accuracy (NaN if none ran), 1.0 when `stop()` ended the stage.
    """
    start = time.perf_counter()
    accuracy = float("nan")
    for step in range(first_step, config.max_steps + 1):
        # 1. stopping rule
        if step % config.eval_every == 0 or step == config.max_steps:
            accuracy = validate()
            log({"sft/step": step, "sft/val_accuracy": accuracy})
            if accuracy >= config.stop_at_accuracy or step == config.max_steps:
                return {"sft/steps": step, "sft/val_accuracy": accuracy, "sft/seconds": time.perf_counter() - start, "sft/stopped": 0.0}
        # 2-3. one supervised step
        metrics = sft_step(engine, make_batch(next(stream)))
        # 4. log
        log({"sft/step": step + 1, **metrics})
        # 5. a stop request (Ctrl-C, SIGTERM) ends the stage after a complete step
        if stop():
            return {"sft/steps": step + 1, "sft/val_accuracy": accuracy, "sft/seconds": time.perf_counter() - start, "sft/stopped": 1.0}
    raise AssertionError("unreachable: the last iteration returns")


def save_sft_checkpoint(directory: Path, engine: TrainingEngine, stream: PromptStream, steps: int) -> None:
    """Everything to continue a stopped SFT stage after `steps` optimiser steps: the engine's
    checkpoint (weights, AdamW, schedule), the data position and the random state. Written
    aside and renamed into place: `directory` is complete or absent."""
    temporary = directory.with_name(f".tmp-{directory.name}")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    engine.save_checkpoint(temporary)
    torch.save({"steps": steps, "stream": stream.state_dict(), "rng": rng_state()}, temporary / STATE_FILE)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(temporary, directory)


def load_sft_checkpoint(directory: Path, engine: TrainingEngine, stream: PromptStream) -> int:
    """Restore what :func:`save_sft_checkpoint` wrote; returns the steps already taken."""
    state = torch.load(directory / STATE_FILE, weights_only=True)
    engine.load_checkpoint(directory)
    stream.load_state_dict(state["stream"])
    set_rng_state(state["rng"])
    return int(state["steps"])


def truncate_sft_metrics(path: Path, steps: int) -> None:
    """Drop the records after step `steps` (logged after the checkpoint was written)."""
    if path.exists():
        from rlhf.logging.jsonl import read_jsonl

        kept = [record for record in read_jsonl(path) if record.get("sft/step", 0) <= steps]
        path.write_text("".join(json.dumps(record) + "\n" for record in kept))
