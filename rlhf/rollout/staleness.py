"""Policy versions and the staleness bound of asynchronous RL, as plain arithmetic.

The trainer's policy version v counts the updates applied so far (0: the initial weights).
Update k (1-based) runs at version k − 1 and produces version k. A sample whose tokens were
generated with versions ≥ w has staleness s = (k − 1) − w when update k trains on it; the
bound η (`async_training.max_staleness`) allows s ≤ η, i.e. a sample of version w trains the
update that produces w + η + 1 at the latest (AReaL, Fu et al. 2025, sec. 5.1).

Groups (one prompt with its n samples) are trained in the order they were requested: the group
at stream position p (0-based) is trained by update p // b + 1 (b groups per batch), or earlier
when groups before it were dropped. So the rollout side keeps the bound without waste by
starting group p only once it holds version ≥ :func:`earliest_version` (p): the group can then
never be too old when it is trained (its start version is the oldest of its tokens).
"""

from __future__ import annotations

import torch


def earliest_version(position: int, batch_groups: int, max_staleness: int) -> int:
    """The oldest policy version that may start generating the group at stream position
    `position`: update k = position // batch_groups + 1 runs at version k − 1, so the start
    version must be ≥ k − 1 − η (never below 0)."""
    return max(0, position // batch_groups - max_staleness)


def staleness(trainer_version: int, sample_versions: torch.Tensor) -> torch.Tensor:
    """[G] how many updates older than the trainer's policy each sample's oldest token is."""
    return trainer_version - sample_versions


def staleness_histogram(values: torch.Tensor, max_staleness: int) -> dict[str, float]:
    """Share of samples per staleness 0..η as `async/staleness_hist/<s>`, and beyond η (kept by
    `stale: correct`) as `async/staleness_hist/>η`; values [G] are integers ≥ 0."""
    total = max(1, values.numel())
    shares = {f"async/staleness_hist/{s}": float((values == s).sum()) / total for s in range(max_staleness + 1)}
    shares[f"async/staleness_hist/>{max_staleness}"] = float((values > max_staleness).sum()) / total
    return shares


def token_versions(segments: list[tuple[int, int]], width: int) -> torch.Tensor:
    """[width] long: the version of each response token of one row, from its segments
    [(version, tokens generated with it), ...] in order; −1 after the last token."""
    out = torch.full((width,), -1, dtype=torch.long)
    start = 0
    for version, count in segments:
        out[start:start + count] = version
        start += count
    return out


def version_segments(versions: torch.Tensor) -> list[list[int]]:
    """The inverse of :func:`token_versions`: [[version, tokens generated with it], ...] in
    order, from one row's [R] token versions (−1, padding, skipped)."""
    segments: list[list[int]] = []
    for version in versions[versions >= 0].tolist():
        if segments and segments[-1][0] == version:
            segments[-1][1] += 1
        else:
            segments.append([version, 1])
    return segments
