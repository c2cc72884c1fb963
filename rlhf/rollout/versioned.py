"""Generation that records which policy version sampled every token, can pause, and can go on
from responses begun earlier.

Without partial rollouts a call generates with the weights it starts with: every token of the
batch has that version. With them (`async_training.partial`, AReaL's interruptible generation,
Fu et al. 2025, sec. 5.2) a call is cut into segments at each weight update:

    (1) take the newest weights; generate, asking after every decoding step whether to pause
    (2) on a pause, rows with EOS or without budget are finished, the others are not
    (3) the unfinished rows continue from prompt + their tokens so far (as token ids, never
        re-tokenised), re-read by the weights now held (no KV cache of older weights survives,
        so the recorded logprob of every later token is exactly that policy's), with the
        budget that is left; back to (1)

A pause also serves a checkpoint: :meth:`VersionedGeneration.states` is every row's response
so far, and a later call given those states as `prefixes` goes on from them (3).

Notation: B rows, R response tokens.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch

from rlhf.data.batch import Batch
from rlhf.data.prompts import sequence_tensor
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.staleness import token_versions


@dataclass
class RowState:
    """One row's response so far: its tokens, their logprobs, and [version, tokens] segments."""

    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    segments: list[list[int]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"tokens": list(self.tokens), "logprobs": list(self.logprobs), "segments": [list(s) for s in self.segments]}


class VersionedGeneration:
    """The rows of one call and their responses so far (steps (1)-(3) of the module docstring).

    Args:
        engine: a rollout engine; pausing needs one whose generate takes `interrupt` (HF, vLLM).
        prompts: [B, P] left-padded prompts with their rows' fields.
        prefixes: per row, a response begun earlier (:meth:`RowState.as_dict`) or None.
    """

    def __init__(self, engine, prompts: Batch, sampling: SamplingParams, prefixes: list[dict | None] | None = None):
        self.engine, self.prompts, self.sampling = engine, prompts, sampling
        self.eos = set(engine.eos_token_ids)
        self.prompt_tokens = [ids[mask.bool()].tolist() for ids, mask in zip(prompts["prompt_ids"], prompts["prompt_mask"])]
        self.rows = [RowState(**prefix) if prefix else RowState() for prefix in (prefixes or [None] * len(self.prompt_tokens))]

    def unfinished(self) -> list[int]:
        """Rows without EOS and with budget left."""
        return [i for i, row in enumerate(self.rows)
                if not self.eos.intersection(row.tokens[-1:]) and len(row.tokens) < self.sampling.max_new_tokens]

    def run(self, version: int, interrupt: Callable[[], bool] | None) -> bool:
        """Generate the unfinished rows with the weights of `version` until they finish or
        `interrupt` says pause (returns False then). Rows of equal length go together: they
        have the same budget left."""
        by_length: dict[int, list[int]] = {}
        for row in self.unfinished():
            by_length.setdefault(len(self.rows[row].tokens), []).append(row)
        for length, rows in sorted(by_length.items()):
            if not self._segment(rows, self.sampling.max_new_tokens - length, version, interrupt):
                return False
        return not self.unfinished()

    def _segment(self, rows: list[int], budget: int, version: int, interrupt) -> bool:
        """One generate call for `rows`; False when it was interrupted."""
        paused = {"yes": False}

        def asked() -> bool:
            paused["yes"] = interrupt is not None and interrupt()
            return paused["yes"]

        ids, mask = sequence_tensor([self.prompt_tokens[i] + self.rows[i].tokens for i in rows], self.engine.tokenizer.pad_token_id, left=True)
        step = dataclasses.replace(self.sampling, max_new_tokens=budget, logprobs=True)
        out = self.engine.generate(Batch({"prompt_ids": ids, "prompt_mask": mask}), step, interrupt=asked)
        for row, response, valid, logprobs in zip(rows, out["response_ids"], out["response_mask"].bool(), out["rollout_logprobs"]):
            state = self.rows[row]
            state.tokens += response[valid].tolist()
            state.logprobs += logprobs[valid].tolist()
            state.segments.append([version, int(valid.sum())])
        return not paused["yes"]

    def states(self) -> list[dict]:
        """Every row's response so far (for a checkpoint)."""
        return [row.as_dict() for row in self.rows]

    def result(self) -> Batch:
        """The rows as `engine.generate` returns them, plus `token_versions [B, R]`."""
        tokenizer, pad = self.engine.tokenizer, self.engine.tokenizer.pad_token_id
        width = max(1, max(len(row.tokens) for row in self.rows))
        response_ids = torch.tensor([row.tokens + [pad] * (width - len(row.tokens)) for row in self.rows], dtype=torch.long)
        response_mask = response_mask_from_ids(response_ids, self.engine.eos_token_ids)
        response_ids = response_ids.masked_fill(response_mask == 0, pad)
        out = Batch(dict(self.prompts.tensors), dict(self.prompts.non_tensors), {**self.prompts.meta, "tokenizer": tokenizer})
        out.set("response_ids", response_ids).set("response_mask", response_mask)
        if self.sampling.logprobs:
            out.set("rollout_logprobs", torch.tensor([row.logprobs + [0.0] * (width - len(row.logprobs)) for row in self.rows]) * response_mask)
        out.set("token_versions", torch.stack([token_versions([tuple(s) for s in row.segments], width) for row in self.rows]))
        return out.set("response_text", tokenizer.batch_decode(response_ids, skip_special_tokens=True))


def generate_with_versions(engine, prompts: Batch, sampling: SamplingParams, refresh: Callable[[], int],
                           newer: Callable[[], bool] | None = None) -> Batch:
    """`engine.generate` of `prompts`, adding `token_versions [B, R]` (−1 on padding).

    Args:
        engine: a rollout engine; with `newer`, one whose generate takes `interrupt` (HF, vLLM).
        refresh: loads the newest weights into the engine; returns the version it now holds.
        newer: partial rollouts: True when newer weights than those held are waiting.
    """
    version = refresh()
    if newer is None:
        out = engine.generate(prompts, sampling)
        versions = torch.where(out["response_mask"].bool(), version, -1)
        return out.set("token_versions", versions)
    generation = VersionedGeneration(engine, prompts, sampling)
    while not generation.run(version, newer):
        version = refresh()
    return generation.result()
