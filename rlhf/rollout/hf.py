"""Rollout with a Hugging Face model in this process (KV cache, left padding, each row stopped at
its EOS): works everywhere, CPU included.

Sampling runs a lean loop of our own rather than `model.generate`: rows leave the batch once
they finish, which makes batches of responses with mixed lengths (the usual case in RL) several
times cheaper. The loop is the static-cache one (:mod:`rlhf.rollout.static_decode`: a
preallocated cache, few shapes, few host synchronisations) wherever the model's attention takes
its mask, else the dynamic one (:mod:`rlhf.rollout.decode`); both draw the same tokens. In the
local hybrid engine the rollout engine wraps the very module the trainer updates, so a weight
sync moves no bytes; given a separate module, `update_weights` copies tensors in place.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.data.batch import Batch
from rlhf.dispatch import ALL, ENGINES, dispatch
from rlhf.rollout.base import SamplingParams, response_mask_from_ids
from rlhf.rollout.decode import decode
from rlhf.rollout.static_decode import decode_static, supports_static_decode


class HFRolloutEngine:
    """`generate(prompts, sampling)` with a Hugging Face causal LM."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, micro_batch_size: int = 0, autocast_dtype: torch.dtype | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.micro_batch_size = micro_batch_size
        self.autocast_dtype = autocast_dtype
        self.eos_token_ids = _eos_ids(model, tokenizer)

    @dispatch(ENGINES)
    @torch.no_grad()
    def generate(self, prompts: Batch, sampling: SamplingParams, interrupt: Callable[[], bool] | None = None) -> Batch:
        """Adds `response_ids [B, R]`, `response_mask [B, R]`, `response_text` (and with
        `sampling.logprobs`, `rollout_logprobs [B, R]`) to `prompts`, and this engine's tokenizer
        as `meta["tokenizer"]`.

        `rollout_logprobs` are float32 log softmax(logits / `sampling.temperature`) of the
        sampled tokens (also when greedy; 0 on padding): what the trainer computes from its own
        forward, so the two can be compared. `micro_batch_size` rows are decoded at a time
        (0: all), which bounds the KV cache. `interrupt` (asked after every decoding step)
        stops the generation early, leaving unfinished rows without EOS (partial rollouts).
        """
        size = self.micro_batch_size or len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [self._generate_chunk(chunk, sampling, interrupt) for chunk in prompts.split(size)]
        finally:
            self.model.train(was_training)
        return Batch.concat(chunks)

    def _generate_chunk(self, prompts: Batch, sampling: SamplingParams, interrupt: Callable[[], bool] | None) -> Batch:
        device = next(self.model.parameters()).device
        loop = decode_static if supports_static_decode(self.model) else decode
        with self._autocast(device):
            decoded = loop(self.model, prompts["prompt_ids"].to(device), prompts["prompt_mask"].to(device), sampling,
                             self.eos_token_ids, self.tokenizer.pad_token_id, interrupt)
        response_mask = response_mask_from_ids(decoded.response_ids, self.eos_token_ids)
        response_ids = decoded.response_ids.masked_fill(response_mask == 0, self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        # reward sources that map characters of the text to tokens need the tokenizer
        out = Batch(dict(prompts.tensors), dict(prompts.non_tensors), {**prompts.meta, "tokenizer": self.tokenizer})
        out.set("response_ids", response_ids.cpu()).set("response_mask", response_mask.cpu())
        if sampling.logprobs:
            out.set("rollout_logprobs", (decoded.logprobs * response_mask).cpu())
        return out.set("response_text", texts)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Copy tensors into this engine's module, unless they already are its own parameters."""
        own = dict(self.model.named_parameters())
        copied = 0
        for name, tensor in named_tensors:
            target = own[name]
            if target.data_ptr() == tensor.data_ptr():
                continue
            target.data.copy_(tensor)
            copied += tensor.numel() * tensor.element_size()
        return copied

    @dispatch(ALL)
    def sleep(self) -> None:
        """HF generate keeps no cache between calls: nothing to free."""

    @dispatch(ALL)
    def wake(self) -> None:
        """Nothing was freed by `sleep`."""


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer and the model's generation config define no EOS token; set tokenizer.eos_token")
    return sorted(ids)
