"""The reference policy: a frozen model that scores responses for the KL term."""

from __future__ import annotations

import torch

from rlhf.algorithms.logprobs import logprobs_from_logits
from rlhf.data.batch import Batch
from rlhf.workers.forward import response_logits


class RefWorker:
    """Log-probabilities of responses under a frozen model."""

    def __init__(self, model: torch.nn.Module, *, temperature: float, micro_batch_size: int):
        self.model = model.eval().requires_grad_(False)
        self.temperature = temperature
        self.micro_batch_size = micro_batch_size

    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 log-probabilities of `response_ids`."""
        parts = []
        for micro in batch.split(self.micro_batch_size):
            logits = response_logits(self.model, micro, self.temperature)
            parts.append(logprobs_from_logits(logits, micro["response_ids"].to(logits.device)).cpu())
        return torch.cat(parts)
