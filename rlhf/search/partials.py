"""Partial (or finished) solutions of a search as a response batch, the form reward sources and
the training step read."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rlhf.data.batch import Batch
from rlhf.search.beam import Partial


def partial_responses(problem: Batch, partials: Sequence[Partial], tokenizer) -> Batch:
    """The one-row `problem` repeated once per partial solution, with the partials as responses:
    `response_ids [M, R]` (right-padded), `response_mask`, `response_text` (decoded with the
    policy `tokenizer`, special tokens skipped, as the engines do; it goes in `meta` too, where
    reward sources that map text to tokens look for it)."""
    ids = [list(partial.token_ids) for partial in partials]
    width = max(1, max(map(len, ids)))
    batch = problem.select([0] * len(partials))
    batch.meta["tokenizer"] = tokenizer
    batch.set("response_ids", torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids], dtype=torch.long))
    batch.set("response_mask", torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in ids], dtype=torch.long))
    return batch.set("response_text", tokenizer.batch_decode(ids, skip_special_tokens=True))

