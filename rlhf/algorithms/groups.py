"""Group statistics over samples that share a prompt (the "group" of GRPO and RLOO).

Notation: B samples, G distinct groups.
"""

from __future__ import annotations

from typing import Sequence

import torch


def group_ids(group_index: Sequence | torch.Tensor, device: torch.device | None = None) -> tuple[torch.Tensor, int]:
    """Map arbitrary hashable group labels to dense ids.

    Args:
        group_index: length-B labels (a list of any hashable values, or a 1-D tensor).
    Returns:
        (ids [B] long in [0, G), G).
    """
    if isinstance(group_index, torch.Tensor):
        unique, ids = torch.unique(group_index, return_inverse=True)
        return ids.to(device or group_index.device), unique.numel()
    dense: dict = {}
    ids = [dense.setdefault(label, len(dense)) for label in group_index]
    return torch.tensor(ids, dtype=torch.long, device=device), len(dense)


def group_sum(values: torch.Tensor, ids: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Sum of `values` [B] per group -> [G]."""
    return torch.zeros(num_groups, dtype=values.dtype, device=values.device).index_add_(0, ids, values)


def group_mean_std(values: torch.Tensor, ids: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample group mean, unbiased group std, and group size, each [B].

    The std of a group of one sample is 0 (there is no spread to measure). Sums run in
    float64, so a group of identical scores has exactly its score as mean and std 0 (a float32
    mean can miss by a rounding step and leave a spurious std of ~1e-6).
    """
    values64 = values.double()
    ones = torch.ones_like(values64)
    count = group_sum(ones, ids, num_groups)
    mean = group_sum(values64, ids, num_groups) / count
    squared_dev = group_sum((values64 - mean[ids]) ** 2, ids, num_groups)
    var = squared_dev / (count - 1).clamp(min=1)
    return mean[ids].to(values.dtype), var.sqrt()[ids].to(values.dtype), count[ids].to(values.dtype)
