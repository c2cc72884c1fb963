"""Autoregressive sampling with a KV cache that drops each row the moment it emits EOS.

`transformers`' `generate` keeps every row of the batch in every decoding step until the last
row finishes, and runs a general pipeline of logits processors and stopping criteria around
each step. For RL rollouts the work that matters is narrower: sample B responses with
temperature / top-k / top-p, stop each at its EOS, and (optionally) return the log-probability
of every sampled token. This loop does only that:

    (1) prefill: one forward over the left-padded prompts, logits of the last position only
    (2) per step: sample the next token of every active row, record it (and its logprob)
    (3) rows that just emitted EOS (or have no budget left) leave the batch: their KV cache
        rows are dropped, so later steps cost only what the still-running rows need
    (4) the next forward feeds one token per active row at its own position

Notation: B rows, P prompt length (left-padded), R = max_new_tokens, V vocabulary, A active rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers import DynamicCache

from rlhf.rollout.base import SamplingParams
from rlhf.rollout.sampling import RowUniforms, next_tokens


@dataclass
class Decoded:
    """Responses of one call."""

    response_ids: torch.Tensor
    """[B, R'] sampled tokens, `pad_id` after each row's EOS (R' <= R: the longest response)."""
    logprobs: torch.Tensor | None
    """[B, R'] float32 log softmax(logits / temperature) of each sampled token (0 on padding)."""


StopHook = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""`stop(rows [A], tokens [A]) -> ended [A]` (bool): told which rows of the call (their indices
in the call's B rows) are still running and the token each just generated, says which of them
end with it."""


@torch.no_grad()
def decode(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: SamplingParams,
           eos_ids: list[int], pad_id: int, interrupt: Callable[[], bool] | None = None, stop: StopHook | None = None) -> Decoded:
    """Sample one response per row of `prompt_ids [B, P]` / `prompt_mask [B, P]` (steps 1-4 of
    the module docstring); the model runs in its current mode (callers put it in eval mode).
    `interrupt`, asked after every step, stops the loop early when it returns True (partial
    rollouts: rows without EOS and with budget left are then unfinished). `stop`, asked after
    every step about the rows that did not just emit EOS (:data:`StopHook`), ends rows like EOS
    does, keeping their last token (step-wise generation: :class:`rlhf.rollout.step_stop.StepStop`)."""
    batch, device, budget = prompt_ids.shape[0], prompt_ids.device, sampling.max_new_tokens
    tokens_out = torch.full((batch, budget), pad_id, dtype=torch.long, device=device)
    logprobs_out = torch.zeros((batch, budget), dtype=torch.float32, device=device)
    eos = torch.tensor(eos_ids, device=device)
    rows = torch.arange(batch, device=device)  # the original row of each active row
    uniforms = RowUniforms(batch, device)
    mask, cache = prompt_mask.long(), DynamicCache()
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
    # 1. prefill
    logits = model(input_ids=prompt_ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True, logits_to_keep=1).logits[:, -1]
    next_position = positions[:, -1:] + 1
    longest = 0
    for step in range(budget):
        # 2. sample and record
        tokens, logprobs = next_tokens(logits, sampling, uniforms.next_step()[rows])
        tokens_out[rows, step], logprobs_out[rows, step] = tokens, logprobs
        longest = step + 1
        # 3. finished rows leave the batch (and the cache)
        running = ~torch.isin(tokens, eos)
        if stop is not None:
            running &= ~ask_stop(stop, rows, tokens, running)
        if step + 1 == budget or not bool(running.any()) or (interrupt is not None and interrupt()):
            break
        if not bool(running.all()):
            keep = running.nonzero().squeeze(-1)
            rows, tokens, mask, next_position = rows[keep], tokens[keep], mask[keep], next_position[keep]
            cache.batch_select_indices(keep)
        # 4. one token per active row
        mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=-1)
        logits = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position, past_key_values=cache,
                       use_cache=True).logits[:, -1]
        next_position = next_position + 1
    return Decoded(tokens_out[:, :longest], logprobs_out[:, :longest])


def ask_stop(stop: StopHook, rows: torch.Tensor, tokens: torch.Tensor, running: torch.Tensor) -> torch.Tensor:
    """[A] bool: the rows of the batch that `stop` ends, asked about the `running [A]` ones only
    (`rows [A]`: their indices in the call, `tokens [A]`: the tokens they just generated)."""
    ended = torch.zeros_like(running)
    if bool(running.any()):
        ended[running] = stop(rows[running], tokens[running]).to(ended.device)
    return ended
