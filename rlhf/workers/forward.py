"""The forward pass every role shares: outputs at the response positions of (prompt + response)
rows — logits for the actor and the reference, values for the critic.

Notation: B rows, P prompt length (left-padded), R response length (right-padded), V vocab.
"""

from __future__ import annotations

import torch

from rlhf.data.batch import Batch


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


def response_values(value_model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Value-head outputs at the same positions as :func:`response_logits`: column t is the
    state that has seen the prompt and response tokens < t (the state before token t).

    Returns:
        [B, R, K] float32 (K = 1 for a scalar critic, the number of bins for HL-Gauss).
    """
    device = next(value_model.parameters()).device
    response_len = batch["response_ids"].shape[1]
    return value_model(**model_inputs(batch, device), keep_last=response_len + 1)[:, :-1]
