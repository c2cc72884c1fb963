"""Autoregressive sampling with a preallocated KV cache and few host synchronisations.

The dynamic loop (:mod:`rlhf.rollout.decode`) asks the device after every token whether a row
has finished, and its cache and inputs change shape whenever one has. On a GPU each question
stalls the host until the device catches up, and every new shape defeats CUDA graphs and
`torch.compile`: that loop is bound by per-token overhead, not by the chip. This loop keeps the
shapes fixed between rare, planned moments:

    (1) prefill: one forward over the left-padded prompts into a cache of L = P + R slots per
        row, allocated once (`WindowedCache`); logits of the last position only
    (2) per step: sample every row of the batch; rows that already finished record padding,
        rows that emit EOS now are marked finished, all on the device
    (3) every `plan.check_every` steps, one question to the device: how many rows still run?
        None: stop. Few enough for a smaller bucket: keep the running rows (and finished ones to
        fill the bucket) and drop the rest of the cache, so batch shapes stay few
    (4) the next forward feeds one token per row at cache slot P + step; attention reads the
        first `window` slots (the slots written so far, rounded up to `plan.window_step`) under
        an additive mask kept on the device (prompt padding and unwritten slots hidden), whose
        entry for the new slot is uncovered in place

Rows finished between checks keep computing until the next check: at most `check_every` - 1
wasted steps per row, the price of not asking. How often to ask and how coarse to make the
shapes depends on the device (`DecodePlan.for_device`): on a GPU few shapes and few questions
matter; on a CPU a question costs nothing and the loop drops rows at once, like the dynamic
loop. Tokens are drawn with :class:`rlhf.rollout.sampling.RowUniforms`, so greedy and seeded
sampled outputs equal the dynamic loop's whatever the plan.

Notation: B rows, P prompt length (left-padded), R = max_new_tokens, L = P + R cache slots,
A rows in the current bucket, W slots in the attention window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from transformers.cache_utils import Cache, StaticLayer

from rlhf.rollout.base import SamplingParams
from rlhf.rollout.decode import Decoded, StopHook, ask_stop
from rlhf.rollout.sampling import RowUniforms, next_tokens

MASKED_IMPLEMENTATIONS = ("sdpa", "eager")
"""Attention implementations that take the 4-D mask this loop builds."""


@dataclass(frozen=True)
class DecodePlan:
    """How often the loop looks at the device and how it shapes the cache and the batch."""

    check_every: int
    """Decoding steps between two looks at how many rows still run."""
    power_of_two_buckets: bool
    """Shrink the batch to powers of two (few shapes) rather than to the running rows exactly."""
    window_step: int
    """The attention window grows in steps of this many cache slots."""
    host_slots: bool
    """Write each step's keys at a slot the host names (a plain slice copy) instead of at a
    position tensor on the device (`index_copy_`, which a CUDA graph can replay)."""

    @staticmethod
    def for_device(device: torch.device) -> DecodePlan:
        """Few shapes and one look every 8 steps on an accelerator. On a CPU neither a look nor a
        new shape costs anything, while memory traffic does: drop rows at once, attend to the
        written slots only, write the cache with plain copies."""
        if device.type == "cpu":
            return DecodePlan(check_every=1, power_of_two_buckets=False, window_step=1, host_slots=True)
        return DecodePlan(check_every=8, power_of_two_buckets=True, window_step=64, host_slots=False)

    def bucket_size(self, running: int, current: int) -> int:
        """Rows the batch keeps when `running` of its `current` rows still run."""
        if not self.power_of_two_buckets:
            return running
        return min(current, 1 << max(running - 1, 0).bit_length())

    def window(self, written: int, slots: int) -> int:
        """Slots attention reads once `written` slots hold keys: rounded up, at most `slots`."""
        return min(slots, -(-written // self.window_step) * self.window_step)


def supports_static_decode(model: torch.nn.Module) -> bool:
    """Whether `model` can run this loop: an attention that takes a prebuilt 4-D mask (flash
    attention kernels do not) and full attention in every layer (no sliding windows)."""
    config = model.config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    full = all(kind == "full_attention" for kind in layer_types) if layer_types else getattr(config, "sliding_window", None) is None
    return full and getattr(model.config, "_attn_implementation", None) in MASKED_IMPLEMENTATIONS


class WindowedLayer(StaticLayer):
    """A static cache layer that hands attention only the first `window` slots of its buffers."""

    def __init__(self, max_cache_len: int, plan: DecodePlan):
        super().__init__(max_cache_len=max_cache_len)
        self.plan, self.window, self.slot = plan, 0, 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Write [A, H, Q, D] keys and values at the next slots; return the window's."""
        if not self.plan.host_slots:
            keys, values = super().update(key_states, value_states, *args, **kwargs)
        else:
            if not self.is_initialized:
                self._allocate(key_states, value_states)
            end = self.slot + key_states.shape[2]
            self.keys[:, :, self.slot : end] = key_states
            self.values[:, :, self.slot : end] = value_states
            self.slot, keys, values = end, self.keys, self.values
        return keys[:, :, : self.window], values[:, :, : self.window]

    def _allocate(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """The buffers, zeroed only when a window may read slots not yet written: otherwise the
        memset of the whole cache (large, once per call) would buy nothing."""
        rows, heads = key_states.shape[:2]
        allocate = torch.zeros if self.plan.window_step > 1 else torch.empty
        self.keys = allocate((rows, heads, self.max_cache_len, key_states.shape[-1]), dtype=key_states.dtype, device=key_states.device)
        self.values = allocate((rows, heads, self.max_cache_len, value_states.shape[-1]), dtype=value_states.dtype, device=value_states.device)
        self.batch_size, self.num_heads, self.is_initialized = rows, heads, True

    def get_seq_length(self) -> int:
        return self.slot if self.plan.host_slots else super().get_seq_length()

    def keep_rows(self, order: torch.Tensor, written: int) -> None:
        """Keep rows `order` of the buffers: their `written` slots move to the first rows, and the
        buffers become views of those rows. No new allocation, the addresses stay (a CUDA graph
        captured on them stays valid), and the slots after `written` stay as they were: zeros
        where the plan zeroed them, never read where it did not."""
        for name in ("keys", "values"):
            buffer = getattr(self, name)
            buffer[: len(order), :, :written] = buffer[order, :, :written]
            setattr(self, name, buffer[: len(order)])
        self.batch_size = len(order)


class WindowedCache(Cache):
    """One `WindowedLayer` of `slots` slots per decoder layer."""

    def __init__(self, num_layers: int, slots: int, plan: DecodePlan):
        super().__init__(layers=[WindowedLayer(slots, plan) for _ in range(num_layers)])

    def set_window(self, window: int) -> None:
        for layer in self.layers:
            layer.window = window


def attention_mask(key_valid: torch.Tensor, query_slots: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[A, 1, Q, W] additive mask (0 where visible, the most negative `dtype` number elsewhere):
    query slot q sees key slot k when k holds a real token (`key_valid [A, W]`) and k <= q.
    Additive rather than boolean: the eager implementation adds it to the scores, and CPU SDPA
    takes a much slower path for a boolean mask over the window's strided keys."""
    slots = torch.arange(key_valid.shape[1], device=key_valid.device)
    visible = key_valid[:, None, None, :] & (slots[None, None, None, :] <= query_slots[None, None, :, None])
    return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill(~visible, torch.finfo(dtype).min)


class _Rows:
    """Per-row state of the batch on the device; `keep` narrows every field to a bucket."""

    def __init__(self, prompt_mask: torch.Tensor, budget: int, dtype: torch.dtype):
        batch, device = prompt_mask.shape[0], prompt_mask.device
        self.rows = torch.arange(batch, device=device)  # the original row of each row of the bucket
        self.next_position = prompt_mask.long().sum(dim=1, keepdim=True)  # [A, 1] position of the next token
        self.finished = torch.zeros(batch, dtype=torch.bool, device=device)
        self.tokens = torch.zeros(batch, dtype=torch.long, device=device)
        # [A, 1, 1, L] additive mask of one decoding step: prompt padding and slots not yet
        # written are hidden; each step uncovers its own slot in place
        self.bias = torch.full((batch, 1, 1, prompt_mask.shape[1] + budget), torch.finfo(dtype).min, dtype=dtype, device=device)
        self.bias[:, 0, 0, : prompt_mask.shape[1]].masked_fill_(prompt_mask.bool(), 0.0)

    def keep(self, size: int, cache: WindowedCache, written: int) -> None:
        """Narrow to `size` rows: the running ones first, then finished ones to fill the bucket."""
        order = torch.argsort(self.finished.int(), stable=True)[:size]
        for name in ("rows", "next_position", "finished", "tokens", "bias"):
            setattr(self, name, getattr(self, name)[order])
        for layer in cache.layers:
            layer.keep_rows(order, written)


@torch.no_grad()
def decode_static(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, sampling: SamplingParams,
                  eos_ids: list[int], pad_id: int, interrupt: Callable[[], bool] | None = None,
                  plan: DecodePlan | None = None, stop: StopHook | None = None) -> Decoded:
    """Sample one response per row of `prompt_ids [B, P]` / `prompt_mask [B, P]` (steps 1-4 of the
    module docstring), with the contract of :func:`rlhf.rollout.decode.decode`: `interrupt`,
    asked after every step (on the host, no device sync), stops the loop early; `stop` ends rows
    as EOS does. The stop reads every step's tokens on the host, so with one the loop also looks
    at the running rows after every step (as with a `check_every` of 1), so that it ends after
    the same step as the dynamic loop."""
    batch, prompt_len, budget = prompt_ids.shape[0], prompt_ids.shape[1], sampling.max_new_tokens
    device, slots = prompt_ids.device, prompt_len + budget
    plan, dtype = plan or DecodePlan.for_device(device), _compute_dtype(model, device)
    tokens_out = torch.full((batch, budget), pad_id, dtype=torch.long, device=device)
    logprobs_out = torch.zeros((batch, budget), dtype=torch.float32, device=device)
    eos, uniforms, state = torch.tensor(eos_ids, device=device), RowUniforms(batch, device), _Rows(prompt_mask, budget, dtype)
    cache = WindowedCache(model.config.get_text_config().num_hidden_layers, slots, plan)
    # 1. prefill
    window = plan.window(prompt_len, slots)
    cache.set_window(window)
    key_valid = torch.nn.functional.pad(prompt_mask.bool(), (0, window - prompt_len))
    mask = attention_mask(key_valid, torch.arange(prompt_len, device=device), dtype)
    logits = model(input_ids=prompt_ids, attention_mask=mask, position_ids=(prompt_mask.long().cumsum(dim=-1) - 1).clamp(min=0),
                   past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
    for step in range(budget):
        # 2. sample every row; finished rows record padding
        tokens, logprobs = next_tokens(logits, sampling, uniforms.next_step()[state.rows])
        tokens_out[state.rows, step] = tokens.masked_fill(state.finished, pad_id)
        logprobs_out[state.rows, step] = logprobs.masked_fill(state.finished, 0.0)
        state.finished |= torch.isin(tokens, eos)
        if stop is not None:
            state.finished |= ask_stop(stop, state.rows, tokens, ~state.finished)
        state.tokens = tokens
        if step + 1 == budget or (interrupt is not None and interrupt()):
            break
        # 3. a rare look: stop, or shrink to a smaller bucket
        written = prompt_len + step
        if stop is not None or (step + 1) % plan.check_every == 0:
            running = int((~state.finished).sum())
            if running == 0:
                break
            size = plan.bucket_size(running, len(state.rows))
            if size < len(state.rows):
                state.keep(size, cache, written)
        # 4. one token per row at slot P + step
        window = plan.window(written + 1, slots)
        cache.set_window(window)
        state.bias[:, :, :, written] = 0.0
        logits = model(input_ids=state.tokens[:, None], attention_mask=state.bias[:, :, :, :window], position_ids=state.next_position,
                       past_key_values=cache, use_cache=True).logits[:, -1]
        state.next_position += 1
    longest = _longest(tokens_out[:, : step + 1], eos)
    return Decoded(tokens_out[:, :longest], logprobs_out[:, :longest])


def _longest(tokens: torch.Tensor, eos: torch.Tensor) -> int:
    """The longest response in `tokens [B, S]` (S steps run): up to a row's first EOS, or all S
    steps for a row without one. Rows after their EOS hold padding, which may itself be an EOS id:
    the first EOS is the real one either way."""
    if tokens.numel() == 0:
        return 0
    has_eos = torch.isin(tokens, eos)
    lengths = torch.where(has_eos.any(dim=1), has_eos.int().argmax(dim=1) + 1, tokens.shape[1])
    return int(lengths.max())


def _compute_dtype(model: torch.nn.Module, device: torch.device) -> torch.dtype:
    """The dtype attention scores are computed in: autocast's, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return next(model.parameters()).dtype
