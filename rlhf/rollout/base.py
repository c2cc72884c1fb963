"""The rollout-engine protocol and what every engine shares.

Input batches carry `prompt_ids [B, P]` (left-padded) and `prompt_mask [B, P]`; `generate`
returns the batch with `response_ids [B, R]` (right-padded), `response_mask [B, R]` (1 up to
and including the first EOS) and the non-tensor `response_text` added; engines that can also
add `rollout_logprobs [B, R]` (float32 log-probabilities of the sampled tokens at the sampling
temperature, 0 on padding), which the loop compares with the trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import torch

from rlhf.data.batch import Batch


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one response per input row (rows are repeated beforehand for n > 1)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 64
    greedy: bool = False
    logprobs: bool = False
    """Also return `rollout_logprobs [B, R]` of the sampled tokens."""


@dataclass(frozen=True)
class StepPrompt:
    """One request of `generate_steps`: sample the next reasoning step of a partial response.

    Both parts are token ids, handed to the model as they are: a prefix is never decoded and
    re-tokenised, which could change its tokens and the policy's probabilities of what follows.
    """

    prompt_ids: tuple[int, ...]
    """The prompt's tokens (no padding)."""
    prefix_ids: tuple[int, ...] = ()
    """The response so far (its earlier steps), which counts against `max_new_tokens`."""


class RolloutEngine(Protocol):
    """Generates responses; gets the trainer's weights after each update."""

    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch: ...

    def generate_steps(self, prompts: Sequence[StepPrompt], k: int, sampling: SamplingParams, delimiter: str | None = None) -> list:
        """For step-level search: k sampled next reasoning steps (`rlhf.search.beam.Step`) of
        each request, stopped at the step delimiter (:mod:`rlhf.rollout.step_stop`)."""
        ...

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load new weights; returns the number of bytes copied (0 when weights are shared)."""
        ...

    def sleep(self) -> None:
        """Free generation-only memory (KV cache) while the trainer trains."""
        ...

    def wake(self) -> None: ...


def response_mask_from_ids(response_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """1 on tokens up to and including the first EOS of each row, 0 after it.

    Args:
        response_ids: [B, R] generated tokens (anything may follow the first EOS).
    Returns:
        [B, R] long mask.
    """
    is_eos = torch.isin(response_ids, torch.tensor(list(eos_token_ids), device=response_ids.device))
    eos_before = is_eos.long().cumsum(dim=-1) - is_eos.long()
    return (eos_before == 0).long()
