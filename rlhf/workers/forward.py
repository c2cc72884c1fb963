"""The forward pass every role shares: outputs at the response positions of (prompt + response)
rows — log-probabilities (and entropy) for the actor and the reference, values for the critic.

Notation: B rows, P prompt length (left-padded), R response length (right-padded), H hidden
size, V vocab.
"""

from __future__ import annotations

import torch

from rlhf.algorithms.head_logprobs import CHUNK_BYTES, head_logprobs
from rlhf.algorithms.logprobs import entropy_from_logits, logprobs_from_logits
from rlhf.data.batch import Batch

FUSED_HEAD_MODELS = frozenset({"llama", "mistral", "qwen2", "qwen3"})
"""Model types whose logits are exactly `lm_head(final hidden state)` (no soft-capping, no
logit scale): their log-probabilities are fused with the head (:func:`response_logprobs`)."""


def model_inputs(batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
    """`input_ids`, `attention_mask` and `position_ids` [B, P + R] of `prompt ++ response`.

    Positions come from the attention mask, so left padding does not shift them.
    """
    input_ids = torch.cat([batch["prompt_ids"], batch["response_ids"]], dim=1).to(device)
    attention_mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1).to(device)
    position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}


def response_logits(model: torch.nn.Module, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Logits that predict each response token, divided by the sampling temperature.

    Only the last R + 1 positions are projected onto the vocabulary (`logits_to_keep`), so
    prompt positions cost no [P, V] logits.

    Returns:
        [B, R, V] logits; row b, column t scores response token t.
    """
    device = next(model.parameters()).device
    response_len = batch["response_ids"].shape[1]
    output = model(**model_inputs(batch, device), logits_to_keep=response_len + 1, use_cache=False)
    logits = output.logits[:, :-1]
    return logits / temperature if temperature != 1.0 else logits


def response_logprobs(model: torch.nn.Module, batch: Batch, temperature: float = 1.0, entropy_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of `response_ids` and the entropy of each next-token distribution,
    under `model` at the sampling temperature.

    Where the model's head allows (:func:`fused_head_weight`) and the micro-batch's float32
    logits would exceed one chunk (`CHUNK_BYTES`), the decoder's hidden states go through the
    head in chunks of tokens (:func:`rlhf.algorithms.head_logprobs.head_logprobs`): the
    [B, R, V] logits are never held at once, in the forward pass or the backward, and the
    entropy comes from the same pass. Otherwise from :func:`response_logits` (small logits:
    one projection is faster), the entropy then carrying gradients only with `entropy_grad`
    (autograd would keep the softmax of every logit for it).

    Returns:
        ([B, R] float32 log-probabilities, [B, R] float32 entropies), with gradients.
    """
    weight = fused_head_weight(model)
    labels = batch["response_ids"]
    if weight is None or labels.numel() * weight.shape[0] * 4 <= CHUNK_BYTES:  # logits of one chunk at most: nothing to save
        logits = response_logits(model, batch, temperature)
        with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
            entropy = entropy_from_logits(logits)
        return logprobs_from_logits(logits, labels.to(logits.device)), entropy
    rows, width = labels.shape
    output = model.get_decoder()(**model_inputs(batch, weight.device), use_cache=False)
    hidden = output.last_hidden_state[:, -width - 1 : -1]  # [B, R, H]: the states that predict each response token
    logprobs, entropy = head_logprobs(hidden.reshape(rows * width, -1), weight, labels.to(weight.device).reshape(-1), temperature)
    return logprobs.reshape(rows, width), entropy.reshape(rows, width)


def fused_head_weight(model: torch.nn.Module) -> torch.Tensor | None:
    """The LM head's [V, H] weight when the logits are exactly `final hidden state @ weightᵀ`
    (a model type of :data:`FUSED_HEAD_MODELS`, a plain bias-free linear head, not partitioned
    by ZeRO-3), else None."""
    if getattr(getattr(model, "config", None), "model_type", None) not in FUSED_HEAD_MODELS:
        return None
    head = model.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None or hasattr(head.weight, "ds_id"):  # ds_id: a ZeRO-3 partition
        return None
    return head.weight


def response_values(value_model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Value-head outputs at the same positions as :func:`response_logits`: column t is the
    state that has seen the prompt and response tokens < t (the state before token t).

    Returns:
        [B, R, K] float32 (K = 1 for a scalar critic, the number of bins for HL-Gauss).
    """
    device = next(value_model.parameters()).device
    response_len = batch["response_ids"].shape[1]
    return value_model(**model_inputs(batch, device), keep_last=response_len + 1)[:, :-1]
