"""Token log-probabilities and entropy fused with the LM head, in chunks of tokens: the logits
of all N tokens over the vocabulary are never held at once, in the forward pass or the backward.

A micro-batch of 32 responses of 128 tokens over Qwen2.5's 151,936-token vocabulary has
[N, V] = [4096, 151936] float32 logits: 2.5 GB, before autograd keeps its own copies. Here
each chunk of C tokens is projected (z = h Wᵀ / T, [C, V]), reduced to its log-probability and
entropy, and dropped; the backward pass projects each chunk again and forms the gradient of
its logits in closed form (p = softmax(z), H = entropy, E_p[z] = Σ p z):

    ∂ log p_y / ∂z = onehot(y) − p            ∂H / ∂z = −p ⊙ (z − E_p[z])

so peak memory is O(C · V) for the head instead of O(N · V), for one more head matmul per
chunk in the backward (the head's own activation checkpointing). The same trick is known as
fused linear cross-entropy (Liger Kernel, Hsu et al. 2024; Wijmans et al. 2024, "Cut Your
Losses in Large-Vocabulary Language Models").

Notation: N tokens, H hidden size, V vocabulary size, C tokens per chunk.
"""

from __future__ import annotations

import torch

CHUNK_BYTES = 256 * 2**20
"""Float32 logits of one chunk at most: C = CHUNK_BYTES / (4 V) tokens (441 at V = 151,936)."""


def chunk_tokens(vocab_size: int, chunk_bytes: int | None = None) -> int:
    """Tokens per chunk so that a chunk's float32 logits take at most `chunk_bytes` (default `CHUNK_BYTES`)."""
    return max(1, (CHUNK_BYTES if chunk_bytes is None else chunk_bytes) // (4 * vocab_size))


def head_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0,
                  chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """log softmax(h Wᵀ / T)[label] and the entropy of softmax(h Wᵀ / T), per token.

    Args:
        hidden: [N, H] final hidden states (after the model's last norm).
        weight: [V, H] the LM head's weight (no bias).
        labels: [N] token ids.
        temperature: T, the sampling temperature the logits are divided by.
        chunk: tokens per chunk (default :func:`chunk_tokens`).
    Returns:
        ([N] float32 log-probabilities, [N] float32 entropies); both carry gradients to
        `hidden` and `weight`.
    """
    return _HeadLogprobs.apply(hidden, weight, labels, float(temperature), chunk or chunk_tokens(weight.shape[0]))


def _matmul_dtype(hidden: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the model's own head would multiply in: autocast's, when it is on."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype


class _HeadLogprobs(torch.autograd.Function):
    """See :func:`head_logprobs`; saves `hidden`, `weight`, `labels` and each token's log-normaliser."""

    @staticmethod
    def forward(ctx, hidden, weight, labels, temperature, chunk):
        dtype = _matmul_dtype(hidden, weight)
        head = weight.to(dtype)
        logprobs = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        entropy, log_norm = torch.empty_like(logprobs), torch.empty_like(logprobs)
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            z = (hidden[rows].to(dtype) @ head.T).float() / temperature  # [C, V]
            log_norm[rows] = torch.logsumexp(z, dim=-1)
            logprobs[rows] = z.gather(-1, labels[rows, None]).squeeze(-1) - log_norm[rows]
            p = torch.exp(z - log_norm[rows, None])
            entropy[rows] = log_norm[rows] - (p * z).sum(dim=-1)
        ctx.save_for_backward(hidden, weight, labels, log_norm)
        ctx.temperature, ctx.chunk, ctx.dtype = temperature, chunk, dtype
        return logprobs, entropy

    @staticmethod
    def backward(ctx, grad_logprobs, grad_entropy):
        hidden, weight, labels, log_norm = ctx.saved_tensors
        head = weight.to(ctx.dtype)
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if ctx.needs_input_grad[1] else None
        for start in range(0, hidden.shape[0], ctx.chunk):
            rows = slice(start, start + ctx.chunk)
            h = hidden[rows].to(ctx.dtype)
            z = (h @ head.T).float() / ctx.temperature
            p = torch.exp(z - log_norm[rows, None])
            grad_z = torch.zeros_like(z)
            if grad_logprobs is not None:  # onehot(y) − p
                grad_z -= p * grad_logprobs[rows, None]
                grad_z.scatter_add_(-1, labels[rows, None], grad_logprobs[rows, None])
            if grad_entropy is not None:  # −p (z − E_p[z])
                expected = (p * z).sum(dim=-1, keepdim=True)
                grad_z -= p * (z - expected) * grad_entropy[rows, None]
            grad_z = (grad_z / ctx.temperature).to(ctx.dtype)
            if grad_hidden is not None:
                grad_hidden[rows] = (grad_z @ head).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight += (grad_z.T @ h).float()
        return grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype), None, None, None
