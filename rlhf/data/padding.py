"""Less padding in forward passes: length-sorted micro-batches, each trimmed to its own rows.

A batch is padded to its longest prompt (left) and its longest response (right). Rows of
similar length put together, and each micro-batch cut to the columns its own rows use, spend
far fewer tokens on padding when lengths vary (the usual case in RL). Padding never changes a
result: positions come from the attention mask, and every loss and statistic is masked.

Notation: B rows, P prompt width (left-padded), R response width (right-padded).
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.data.batch import Batch

PROMPT_KEYS = ("prompt_ids", "prompt_mask")
"""The [B, P] tensors; every other tensor with a second dimension of R is response-aligned."""


def sequence_lengths(batch: Batch) -> torch.Tensor:
    """[B] prompt + response tokens of each row."""
    return batch["prompt_mask"].sum(dim=-1) + batch["response_mask"].sum(dim=-1)


def length_order(batch: Batch) -> torch.Tensor:
    """[B] row indices from the shortest sequence to the longest (stable: ties keep their order)."""
    return torch.sort(sequence_lengths(batch), stable=True).indices


def trimmed(batch: Batch) -> Batch:
    """The batch without the prompt columns that are padding in every row (from the left) and
    the response columns that are padding in every row (from the right)."""
    used_prompt = batch["prompt_mask"].any(dim=0).nonzero()
    used_response = batch["response_mask"].any(dim=0).nonzero()
    start = int(used_prompt[0]) if len(used_prompt) else batch["prompt_mask"].shape[1]
    end = int(used_response[-1]) + 1 if len(used_response) else 0
    width = batch["response_mask"].shape[1]
    tensors = {}
    for key, tensor in batch.tensors.items():
        if key in PROMPT_KEYS:
            tensors[key] = tensor[:, start:]
        elif tensor.dim() >= 2 and tensor.shape[1] == width:
            tensors[key] = tensor[:, :end]
        else:
            tensors[key] = tensor
    # the untrimmed width R: the default divisor of seq-mean-token-sum-norm (Dr. GRPO)
    return Batch(tensors, dict(batch.non_tensors), {"response_width": width, **batch.meta})


def pad_columns(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """[b, r, ...] right-padded with zeros to [b, width, ...]."""
    missing = width - tensor.shape[1]
    if missing == 0:
        return tensor
    return torch.cat([tensor, tensor.new_zeros((tensor.shape[0], missing, *tensor.shape[2:]))], dim=1)


def map_micro_batches(batch: Batch, size: int, fn: Callable[[Batch], torch.Tensor]) -> torch.Tensor:
    """`fn` over length-sorted, trimmed micro-batches of `size` rows, reassembled into the
    batch's row order and response width.

    Args:
        fn: micro-batch -> [b, r, ...] response-aligned outputs (r: that micro-batch's width).
    Returns:
        [B, R, ...] outputs, zero on columns a micro-batch did not have.
    """
    order = length_order(batch)
    width = batch["response_mask"].shape[1]
    parts = [pad_columns(fn(trimmed(micro)), width) for micro in batch.select(order).split(size)]
    sorted_outputs = torch.cat(parts)
    outputs = torch.empty_like(sorted_outputs)
    outputs[order.to(outputs.device)] = sorted_outputs
    return outputs
