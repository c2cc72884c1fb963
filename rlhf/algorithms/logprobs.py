"""Token log-probabilities and entropy from logits, without a full [B, T, V] log-softmax copy.

Notation: N tokens (any leading shape flattened), V vocabulary size.
"""

from __future__ import annotations

import torch

CHUNK_TOKENS = 4096
"""Tokens per chunk: bounds the float32 working memory to CHUNK_TOKENS × V."""


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per token, as gather − logsumexp, chunked over tokens.

    Args:
        logits: [..., V] (any float dtype; computed in float32).
        labels: [...] token ids.
    Returns:
        [...] float32 log-probabilities.
    """
    flat_logits = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1)
    out = []
    for start in range(0, flat_logits.shape[0], CHUNK_TOKENS):
        chunk = flat_logits[start : start + CHUNK_TOKENS].float()
        picked = chunk.gather(-1, flat_labels[start : start + CHUNK_TOKENS, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(chunk, dim=-1))
    return torch.cat(out).reshape(labels.shape) if out else flat_logits.new_zeros(labels.shape, dtype=torch.float32)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per token: logsumexp(z) − Σ softmax(z)·z, chunked over tokens.

    Args:
        logits: [..., V].
    Returns:
        [...] float32 entropies.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    out = []
    for start in range(0, flat.shape[0], CHUNK_TOKENS):
        chunk = flat[start : start + CHUNK_TOKENS].float()
        log_norm = torch.logsumexp(chunk, dim=-1)
        out.append(log_norm - (torch.softmax(chunk, dim=-1) * chunk).sum(dim=-1))
    return torch.cat(out).reshape(logits.shape[:-1]) if out else flat.new_zeros(logits.shape[:-1], dtype=torch.float32)
