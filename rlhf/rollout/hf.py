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
from dataclasses import replace
from typing import Callable, Iterable, Iterator, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.data.batch import Batch
from rlhf.data.prompts import sequence_tensor
from rlhf.dispatch import ALL, ENGINES, dispatch
from rlhf.rollout.base import SamplingParams, StepPrompt, response_mask_from_ids
from rlhf.rollout.decode import decode
from rlhf.rollout.static_decode import decode_static, supports_static_decode
from rlhf.rollout.step_stop import StepStop, per_request, row_steps, step_rows
from rlhf.search.beam import Step


class HFRolloutEngine:
    """`generate(prompts, sampling)` with a Hugging Face causal LM, and `generate_steps` for
    step-level search."""

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
        with self._eval_mode():
            chunks = [self._generate_chunk(chunk, sampling, interrupt) for chunk in prompts.split(size)]
        return Batch.concat(chunks)

    def _generate_chunk(self, prompts: Batch, sampling: SamplingParams, interrupt: Callable[[], bool] | None) -> Batch:
        device = next(self.model.parameters()).device
        with self._autocast(device):
            decoded = self._loop()(self.model, prompts["prompt_ids"].to(device), prompts["prompt_mask"].to(device), sampling,
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

    @dispatch(ENGINES)
    @torch.no_grad()
    def generate_steps(self, prompts: Sequence[StepPrompt], k: int, sampling: SamplingParams, delimiter: str | None = None) -> list[list[Step]]:
        """`k` sampled next reasoning steps for each request (prompt + prefix, as token ids).

        Each sample continues the request's prompt and prefix token ids and stops after the
        token that completes the step `delimiter` (a regex, None: a blank line; see
        :mod:`rlhf.rollout.step_stop`), at EOS, or when prefix + step reach
        `sampling.max_new_tokens`; only a step stopped by the delimiter has `ended=False`. An EOS
        is kept at the end of its step. The requests' k·N rows are decoded together
        (`micro_batch_size` rows at a time) by the loop `generate` uses, with the same sampling.
        Steps carry no logprobs: a trainer recomputes them for the response it keeps.
        """
        inputs, limits = step_rows(prompts, k, sampling.max_new_tokens)
        live = [i for i, limit in enumerate(limits) if limit > 0]
        size = self.micro_batch_size or len(live) or 1
        steps = []
        with self._eval_mode():
            for start in range(0, len(live), size):
                chunk = live[start : start + size]
                steps += self._steps_chunk([inputs[i] for i in chunk], [limits[i] for i in chunk], sampling, delimiter)
        return per_request(limits, steps, k)

    def _steps_chunk(self, inputs: list[list[int]], limits: list[int], sampling: SamplingParams, delimiter: str | None) -> list[Step]:
        """The steps of rows `inputs` (token ids, each with `limits` > 0 tokens left), decoded
        in one call with a :class:`StepStop`."""
        device = next(self.model.parameters()).device
        prompt_ids, prompt_mask = sequence_tensor(inputs, self.tokenizer.pad_token_id, left=True)
        stop = StepStop(self.tokenizer, limits, delimiter)
        budget = replace(sampling, max_new_tokens=max(limits), logprobs=False)
        with self._autocast(device):
            decoded = self._loop()(model=self.model, prompt_ids=prompt_ids.to(device), prompt_mask=prompt_mask.to(device), sampling=budget,
                           eos_ids=self.eos_token_ids, pad_id=self.tokenizer.pad_token_id, stop=stop)
        response_ids = decoded.response_ids.cpu()
        eos_tokens = []
        for row, tokens in enumerate(stop.tokens):
            # the stop is never asked about an EOS token: a row it did not end, ended at EOS
            eos_tokens.append(int(response_ids[row, len(tokens)]) if stop.reasons[row] is None else None)
            assert eos_tokens[-1] is None or eos_tokens[-1] in self.eos_token_ids, (row, eos_tokens[-1])
        return row_steps(stop, eos_tokens)

    def _loop(self) -> Callable:
        """The decode loop: the static-cache one where the model's attention takes its mask."""
        return decode_static if supports_static_decode(self.model) else decode

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """The model in eval mode for the block, then back in the mode it was in."""
        was_training = self.model.training
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(was_training)

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
