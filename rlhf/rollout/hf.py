"""Rollout with Hugging Face `generate` (KV cache, left padding, stop at EOS): works everywhere.

In the local hybrid engine the rollout engine wraps the very module the trainer updates, so a
weight sync moves no bytes; given a separate module, `update_weights` copies tensors in place.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from rlhf.algorithms.logprobs import logprobs_from_logits
from rlhf.data.batch import Batch
from rlhf.rollout.base import SamplingParams, response_mask_from_ids


class HFRolloutEngine:
    """`generate(prompts, sampling)` with `transformers`' `model.generate`."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, micro_batch_size: int = 0, autocast_dtype: torch.dtype | None = None):
        self.model = model
        self.tokenizer = tokenizer
        self.micro_batch_size = micro_batch_size
        self.autocast_dtype = autocast_dtype
        self.eos_token_ids = _eos_ids(model, tokenizer)

    def generation_config(self, sampling: SamplingParams) -> GenerationConfig:
        """A complete config, so a checkpoint's own generation defaults never leak in."""
        return GenerationConfig(
            do_sample=not sampling.greedy,
            temperature=None if sampling.greedy else sampling.temperature,
            top_p=None if sampling.greedy else sampling.top_p,
            top_k=None if sampling.greedy else sampling.top_k,
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_token_ids,
            repetition_penalty=1.0,
            # raw logits (before temperature / top-k / top-p) give each sampled token's logprob
            return_dict_in_generate=True,
            output_logits=sampling.logprobs,
        )

    @torch.no_grad()
    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        """Adds `response_ids [B, R]`, `response_mask [B, R]`, `response_text` (and with
        `sampling.logprobs`, `rollout_logprobs [B, R]`) to `prompts`, and this engine's tokenizer
        as `meta["tokenizer"]`.

        `rollout_logprobs` are float32 log softmax(logits / `sampling.temperature`) of the
        sampled tokens (also when greedy; 0 on padding): what the trainer computes from its own
        forward, so the two can be compared. `model.generate` holds the raw [B, R, V] logits of
        a call until it returns: `micro_batch_size` bounds that memory.
        """
        config = self.generation_config(sampling)
        size = self.micro_batch_size or len(prompts)
        was_training = self.model.training
        self.model.eval()
        try:
            chunks = [self._generate_chunk(chunk, config, sampling.temperature) for chunk in prompts.split(size)]
        finally:
            self.model.train(was_training)
        return Batch.concat(chunks)

    def _generate_chunk(self, prompts: Batch, config: GenerationConfig, temperature: float) -> Batch:
        device = next(self.model.parameters()).device
        prompt_ids = prompts["prompt_ids"].to(device)
        with self._autocast(device):
            output = self.model.generate(input_ids=prompt_ids, attention_mask=prompts["prompt_mask"].to(device), generation_config=config)
        response_ids = output.sequences[:, prompt_ids.shape[1] :]
        response_mask = response_mask_from_ids(response_ids, self.eos_token_ids)
        logprobs = sampled_logprobs(output.logits, response_ids, temperature) * response_mask if output.logits else None
        output.logits = None  # free the [B, R, V] raw logits before decoding
        response_ids = response_ids.masked_fill(response_mask == 0, self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        # reward sources that map characters of the text to tokens need the tokenizer
        out = Batch(dict(prompts.tensors), dict(prompts.non_tensors), {**prompts.meta, "tokenizer": self.tokenizer})
        out.set("response_ids", response_ids.cpu()).set("response_mask", response_mask.cpu())
        if logprobs is not None:
            out.set("rollout_logprobs", logprobs.cpu())
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

    def sleep(self) -> None:
        """HF generate keeps no cache between calls: nothing to free."""

    def wake(self) -> None:
        """Nothing was freed by `sleep`."""


def sampled_logprobs(step_logits: tuple[torch.Tensor, ...], response_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(logits / temperature)[token] of each generated token, one step at a time
    (no stacked [B, R, V] copy). Divided like the trainer's `response_logits`.

    Args:
        step_logits: R tensors [B, V] of raw logits, as `generate(output_logits=True)` returns.
        response_ids: [B, R] the tokens generated at those steps.
    Returns:
        [B, R] float32 log-probabilities.
    """
    assert len(step_logits) == response_ids.shape[1], (len(step_logits), tuple(response_ids.shape))
    columns = [
        logprobs_from_logits(logits / temperature if temperature != 1.0 else logits, response_ids[:, t])
        for t, logits in enumerate(step_logits)
    ]
    return torch.stack(columns, dim=1) if columns else response_ids.new_zeros(response_ids.shape, dtype=torch.float32)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer and the model's generation config define no EOS token; set tokenizer.eos_token")
    return sorted(ids)
