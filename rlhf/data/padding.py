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


def micro_batch_rows(batch: Batch, size: int, max_tokens: int = 0, agree: Callable[[int], int] | None = None) -> list[torch.Tensor]:
    """Row indices of each micro-batch: rows in length order (shortest first), cut into runs
    of at most `size` rows and, when `max_tokens` > 0, at most `max_tokens` tokens as the
    forward sees them after trimming: rows × (longest prompt + longest response) of the run.

    A token budget makes micro-batches of short rows wide and of long rows narrow, so every
    forward does about the same work (veRL's dynamic batch size, by another route). A row
    longer than the budget gets a micro-batch of its own.

    Args:
        agree: micro-batch count -> the count every data-parallel rank must use (their
            maximum). Ranks whose forwards run collectives (ZeRO-3 gathers weights in each
            one) must run as many as each other; a rank below the count splits its widest
            micro-batches in two until it matches.
    Returns:
        index tensors into `batch`; together a permutation of its rows.
    """
    order = length_order(batch)
    if max_tokens <= 0:
        runs = list(order.split(size))
    else:
        prompt_lengths, response_lengths = batch["prompt_mask"].sum(-1), batch["response_mask"].sum(-1)
        runs, current, longest_prompt, longest_response = [], [], 0, 0
        for row in order.tolist():
            prompt, response = max(longest_prompt, int(prompt_lengths[row])), max(longest_response, int(response_lengths[row]))
            if current and (len(current) == size or (len(current) + 1) * (prompt + response) > max_tokens):
                runs.append(torch.tensor(current))
                current, prompt, response = [], int(prompt_lengths[row]), int(response_lengths[row])
            current.append(row)
            longest_prompt, longest_response = prompt, response
        runs += [torch.tensor(current)] if current else []
    if agree is not None:
        runs = split_to_count(runs, agree(len(runs)))
    return runs


def split_to_count(runs: list[torch.Tensor], count: int) -> list[torch.Tensor]:
    """`runs` with the one of most rows split in halves (order kept) until there are `count`."""
    runs = list(runs)
    while len(runs) < count:
        widest = max(range(len(runs)), key=lambda i: len(runs[i]))
        if len(runs[widest]) < 2:
            raise ValueError(f"cannot make {count} micro-batches from {sum(len(r) for r in runs)} rows")
        half = (len(runs[widest]) + 1) // 2
        runs[widest : widest + 1] = [runs[widest][:half], runs[widest][half:]]
    return runs


def map_micro_batches(
    batch: Batch, size: int, fn: Callable[[Batch], torch.Tensor], max_tokens: int = 0, agree: Callable[[int], int] | None = None,
) -> torch.Tensor:
    """`fn` over length-sorted, trimmed micro-batches (:func:`micro_batch_rows`), reassembled
    into the batch's row order and response width.

    Args:
        fn: micro-batch -> [b, r, ...] response-aligned outputs (r: that micro-batch's width).
    Returns:
        [B, R, ...] outputs, zero on columns a micro-batch did not have.
    """
    runs = micro_batch_rows(batch, size, max_tokens, agree)
    width = batch["response_mask"].shape[1]
    sorted_outputs = torch.cat([pad_columns(fn(trimmed(batch.select(rows))), width) for rows in runs])
    order = torch.cat(runs)
    outputs = torch.empty_like(sorted_outputs)
    outputs[order.to(outputs.device)] = sorted_outputs
    return outputs
