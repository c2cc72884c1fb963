"""`Batch`: the one container passed between the controller and the roles.

Notation (used in docstrings across the package):
    B: sequences in the batch, P: prompt length (left-padded), R: response length
    (right-padded), T = P + R.

A batch holds named tensors that share the leading dimension B, per-sample non-tensor fields
(lists of length B: prompt text, ground truth, group id, ...), and run metadata (a dict that
is carried along unchanged). Common tensors:

    prompt_ids      [B, P]  left-padded prompt tokens
    prompt_mask     [B, P]  1 on real prompt tokens
    response_ids    [B, R]  right-padded response tokens
    response_mask   [B, R]  1 on real response tokens (EOS included): the attention mask
    action_mask     [B, R]  multi-turn only: 1 on the tokens the policy generated (not on the
                            environment's observations between actions); see `action_mask()`
    old_logprobs    [B, R]  token-level tensors all have this shape
    scores          [B]     sequence-level tensors
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch


LEFT_PADDED = frozenset({"prompt_ids", "prompt_mask"})
"""Tensors padded on the left (prompts end where the response starts)."""

PAD_VALUES = {"turn_index": -1, "action_starts": -1, "action_ends": -1, "token_versions": -1}
"""Tensors whose padding is not 0 (−1 marks "no turn" / "no token" there); every other tensor
is padded with 0."""


@dataclass
class Batch:
    """Named tensors and per-sample fields sharing the leading batch dimension."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    non_tensors: dict[str, list] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in self.tensors.items()}
        sizes.update({k: len(v) for k, v in self.non_tensors.items()})
        if len(set(sizes.values())) > 1:
            raise ValueError(f"Batch fields disagree on the batch size: {sizes}")

    def __len__(self) -> int:
        for value in self.tensors.values():
            return value.shape[0]
        for items in self.non_tensors.values():
            return len(items)
        return 0

    def __getitem__(self, key: str) -> Any:
        if key in self.tensors:
            return self.tensors[key]
        if key in self.non_tensors:
            return self.non_tensors[key]
        raise KeyError(f"Batch has no field {key!r}; it has {sorted(self.keys())}")

    def __contains__(self, key: str) -> bool:
        return key in self.tensors or key in self.non_tensors

    def keys(self) -> list[str]:
        return [*self.tensors, *self.non_tensors]

    def set(self, key: str, value: torch.Tensor | list) -> "Batch":
        """Add or replace one field in place (its length must be B); returns self."""
        if len(self) and len(value) != len(self):
            raise ValueError(f"field {key!r} has length {len(value)}, batch has {len(self)}")
        target = self.tensors if isinstance(value, torch.Tensor) else self.non_tensors
        target[key] = value if isinstance(value, torch.Tensor) else list(value)
        return self

    def select(self, indices: Sequence[int] | torch.Tensor) -> "Batch":
        """The samples at `indices`, in that order (a new batch; tensors are indexed copies)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        positions = index.tolist()
        return Batch(
            tensors={k: v[index.to(v.device)] for k, v in self.tensors.items()},
            non_tensors={k: [v[i] for i in positions] for k, v in self.non_tensors.items()},
            meta=dict(self.meta),
        )

    def split(self, size: int) -> list["Batch"]:
        """Consecutive chunks of `size` samples (the last one may be shorter)."""
        if size < 1:
            raise ValueError(f"split size must be >= 1, got {size}")
        return [self.select(range(i, min(i + size, len(self)))) for i in range(0, len(self), size)]

    def repeat_interleave(self, n: int) -> "Batch":
        """Each sample repeated n times in a row: [a, b] -> [a, a, b, b] for n = 2."""
        return self.select(torch.arange(len(self)).repeat_interleave(n))

    def to(self, device: torch.device | str) -> "Batch":
        """A batch whose tensors live on `device`."""
        tensors = {k: v.to(device) for k, v in self.tensors.items()}
        return Batch(tensors, dict(self.non_tensors), dict(self.meta))

    @staticmethod
    def concat(batches: Iterable["Batch"]) -> "Batch":
        """Samples of all batches in order. Tensors are padded to a common width along dim 1
        when their widths differ (with 0, or their `PAD_VALUES`): on the left for the
        left-padded prompt tensors (`LEFT_PADDED`), on the right for everything else (responses
        of separate chunks, the turns of separate episode batches)."""
        batches = list(batches)
        if not batches:
            return Batch()
        tensors = {k: _cat_padded([b.tensors[k] for b in batches], left=k in LEFT_PADDED, value=PAD_VALUES.get(k, 0))
                   for k in batches[0].tensors}
        non_tensors = {k: [x for b in batches for x in b.non_tensors[k]] for k in batches[0].non_tensors}
        return Batch(tensors, non_tensors, dict(batches[0].meta))


def _cat_padded(parts: list[torch.Tensor], left: bool = False, value: int = 0) -> torch.Tensor:
    if parts[0].dim() < 2 or len({p.shape[1] for p in parts}) == 1:
        return torch.cat(parts)
    width = max(p.shape[1] for p in parts)
    padded = [torch.nn.functional.pad(p, (width - p.shape[1], 0) if left else (0, width - p.shape[1]), value=value) for p in parts]
    return torch.cat(padded)


def action_mask(batch: Batch) -> torch.Tensor:
    """[B, R] 1 on the response tokens the policy generated: what every loss, logprob, KL,
    value and advantage averages over. A multi-turn batch carries `action_mask` (observation
    tokens between actions are 0); in a single-turn batch every response token is an action,
    so it is `response_mask`."""
    return batch["action_mask"] if "action_mask" in batch else batch["response_mask"]
