"""Choosing the next token from last-position logits: greedy, temperature, top-k, top-p.

A draw uses one uniform number per row, taken from a stream that belongs to the row
(`RowUniforms`), and inverts the row's cumulative distribution at it. So a row's tokens depend
on its own logits and its own stream only: not on how many other rows are still in the batch,
nor on the order rows leave it. That makes decode loops that drop finished rows at different
moments (the dynamic loop drops them at once, the static loop in buckets) draw exactly the
same samples for one seed.

Notation: A rows in the call, V vocabulary, B rows of the whole generate call.
"""

from __future__ import annotations

import torch

from rlhf.rollout.base import SamplingParams


class RowUniforms:
    """One uniform number in (0, 1] per row of the call and per decoding step, from a generator
    seeded by the global RNG (one draw per call, so seeding torch seeds the whole call)."""

    def __init__(self, rows: int, device: torch.device):
        seed = int(torch.randint(0, 2**62, (1,)).item())
        self.rows = rows
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.device = device

    def next_step(self) -> torch.Tensor:
        """[B] uniforms of the next step, for every row of the call, finished or not: the
        stream advances the same way whatever the batch looks like."""
        return 1.0 - torch.rand(self.rows, generator=self.generator, device=self.device)


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Logits [A, V] with every token outside the top-k, and outside the smallest set whose
    probability reaches top_p (nucleus sampling, Holtzman et al. 2020), set to -inf.
    The most likely token always survives."""
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        outside = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # mass before the token already reaches top_p
        logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
    return logits


def inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Tokens [A]: for each row of `probs [A, V]` the first token whose cumulative probability
    reaches `uniforms [A]` (in (0, 1]) times the row's total. A token of probability 0 is never
    chosen: the threshold is above 0 and the cumulative sum does not rise at it."""
    cumulative = probs.cumsum(dim=-1)
    threshold = uniforms[:, None].to(cumulative.dtype) * cumulative[:, -1:]
    return torch.searchsorted(cumulative, threshold).squeeze(-1).clamp(max=probs.shape[-1] - 1)


def next_tokens(logits: torch.Tensor, sampling: SamplingParams, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens [A], float32 logprobs [A]) for the last-position logits [A, V]: argmax when greedy,
    else a draw from softmax(filtered logits / temperature) at `uniforms [A]`. The logprob is
    under the unfiltered distribution at the temperature, as the trainer computes it."""
    scaled = logits.float() / sampling.temperature if sampling.temperature != 1.0 else logits.float()
    log_probs = scaled.log_softmax(dim=-1)
    if sampling.greedy:
        tokens = scaled.argmax(dim=-1)
    else:
        tokens = inverse_cdf(filter_logits(scaled, sampling.top_k, sampling.top_p).softmax(dim=-1), uniforms)
    return tokens, log_probs.gather(-1, tokens[:, None]).squeeze(-1)
