"""Generation that records which policy version sampled every token, with partial rollouts.

Without partial rollouts a call generates with the weights it starts with: every token of the
batch has that version. With them (`async_training.partial`, AReaL's interruptible generation,
Fu et al. 2025, sec. 5.2) a call is cut into segments at each weight update:

    (1) take the newest weights; generate, asking after every decoding step whether newer
        weights arrived
    (2) when they did, stop: rows with EOS or without budget are finished, the others are not
    (3) the unfinished rows continue from prompt + their tokens so far (as token ids, never
        re-tokenised), re-read by the new weights (no KV cache of the old weights survives, so
        the recorded logprob of every later token is exactly the new policy's), with the
        budget that is left; back to (1)

Notation: B rows, R response tokens.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from rlhf.data.batch import Batch
from rlhf.data.prompts import sequence_tensor
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.staleness import token_versions


def generate_with_versions(engine, prompts: Batch, sampling: SamplingParams, refresh: Callable[[], int],
                           newer: Callable[[], bool] | None = None) -> Batch:
    """`engine.generate` of `prompts`, adding `token_versions [B, R]` (−1 on padding).

    Args:
        engine: a rollout engine; with `newer`, an HF engine (its generate takes `interrupt`).
        refresh: loads the newest weights into the engine; returns the version it now holds.
        newer: partial rollouts: True when newer weights than those held are waiting.
    """
    version = refresh()
    if newer is None:
        out = engine.generate(prompts, sampling)
        versions = torch.where(out["response_mask"].bool(), version, -1)
        return out.set("token_versions", versions)
    return _partial(engine, prompts, sampling, refresh, newer, version)


def _partial(engine, prompts: Batch, sampling: SamplingParams, refresh, newer, version: int) -> Batch:
    """Steps (1)-(3) of the module docstring until every row is finished."""
    eos, pad = set(engine.eos_token_ids), engine.tokenizer.pad_token_id
    prompt_tokens = [ids[mask.bool()].tolist() for ids, mask in zip(prompts["prompt_ids"], prompts["prompt_mask"])]
    tokens: list[list[int]] = [[] for _ in prompt_tokens]
    logprobs: list[list[float]] = [[] for _ in prompt_tokens]
    segments: list[list[tuple[int, int]]] = [[] for _ in prompt_tokens]
    active = list(range(len(prompt_tokens)))
    while active:
        # 1-2. generate with the newest weights until newer ones arrive
        ids, mask = sequence_tensor([prompt_tokens[i] + tokens[i] for i in active], pad, left=True)
        budget = sampling.max_new_tokens - len(tokens[active[0]])  # every unfinished row ran the same steps
        step = dataclasses.replace(sampling, max_new_tokens=budget, logprobs=True)
        out = engine.generate(Batch({"prompt_ids": ids, "prompt_mask": mask}), step, interrupt=newer)
        for row, response, valid, row_logprobs in zip(active, out["response_ids"], out["response_mask"].bool(), out["rollout_logprobs"]):
            tokens[row] += response[valid].tolist()
            logprobs[row] += row_logprobs[valid].tolist()
            segments[row].append((version, int(valid.sum())))
        # 3. unfinished rows continue with the new weights
        active = [row for row in active if not eos.intersection(tokens[row][-1:]) and len(tokens[row]) < sampling.max_new_tokens]
        if active:
            version = refresh()
    return _assemble(engine, prompts, tokens, logprobs, segments, sampling.logprobs)


def _assemble(engine, prompts: Batch, tokens, logprobs, segments, with_logprobs: bool) -> Batch:
    """The rows' tokens as the batch `engine.generate` would have returned, plus versions."""
    pad = engine.tokenizer.pad_token_id
    width = max(1, max(len(row) for row in tokens))
    response_ids = torch.tensor([row + [pad] * (width - len(row)) for row in tokens], dtype=torch.long)
    response_mask = response_mask_from_ids(response_ids, engine.eos_token_ids)
    response_ids = response_ids.masked_fill(response_mask == 0, pad)
    out = Batch(dict(prompts.tensors), dict(prompts.non_tensors), {**prompts.meta, "tokenizer": engine.tokenizer})
    out.set("response_ids", response_ids).set("response_mask", response_mask)
    if with_logprobs:
        out.set("rollout_logprobs", torch.tensor([row + [0.0] * (width - len(row)) for row in logprobs]) * response_mask)
    out.set("token_versions", torch.stack([token_versions(row, width) for row in segments]))
    return out.set("response_text", engine.tokenizer.batch_decode(response_ids, skip_special_tokens=True))
