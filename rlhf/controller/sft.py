"""The supervised warm start: teach the response format before RL, stop at a target accuracy.

Reasoning-RL recipes (e.g. T1) start RL from an SFT model so that sampled responses earn a
non-zero reward. We train on (prompt, ground truth + EOS) with the loss on response tokens only,
at a *constant* learning rate, and stop as soon as greedy validation accuracy reaches
`sft.stop_at_accuracy`: a fixed step count is fragile across seeds (where accuracy jumps moves),
and a schedule decaying to zero leaves a high-entropy model that RL then makes worse.
"""

from __future__ import annotations

import time
from typing import Callable


from rlhf.algorithms.logprobs import logprobs_from_logits
from rlhf.algorithms.losses import masked_mean
from rlhf.config.schema import SFTConfig
from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream, sequence_tensor
from rlhf.engines.base import TrainingEngine
from rlhf.workers.forward import response_logits


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
    nll = -masked_mean(logprobs_from_logits(logits, batch["response_ids"].to(device)), batch["response_mask"].to(device).float())
    engine.backward(nll)
    grad_norm = engine.step()
    return {"sft/loss": nll.item(), "sft/grad_norm": grad_norm.item()}


def run_sft(
    engine: TrainingEngine,
    make_batch: Callable[[list[dict]], Batch],
    rows: list[dict],
    validate: Callable[[], float],
    config: SFTConfig,
    seed: int,
    log: Callable[[dict], None],
) -> dict[str, float]:
    """Train until validation accuracy reaches the target or `max_steps` run out.

    Steps: (1) check the stopping rule every `eval_every` steps (and before the first step)
    (2) draw a batch of rows (3) one NLL step on its responses (4) log.

    Args:
        make_batch: rows -> SFT batch (prompt and response tensors).
        validate: () -> greedy validation accuracy of the current model.
        log: receives one metrics dict per step.
    Returns:
        {"sft/steps", "sft/val_accuracy", "sft/seconds"} at the end.
    """
    stream = PromptStream(rows, config.batch_size, seed)
    start = time.perf_counter()
    for step in range(config.max_steps + 1):
        # 1. stopping rule
        if step % config.eval_every == 0 or step == config.max_steps:
            accuracy = validate()
            log({"sft/step": step, "sft/val_accuracy": accuracy})
            if accuracy >= config.stop_at_accuracy or step == config.max_steps:
                return {"sft/steps": step, "sft/val_accuracy": accuracy, "sft/seconds": time.perf_counter() - start}
        # 2-3. one supervised step
        metrics = sft_step(engine, make_batch(next(stream)))
        # 4. log
        log({"sft/step": step + 1, **metrics})
    raise AssertionError("unreachable: the last iteration returns")
