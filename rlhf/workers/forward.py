"""The forward pass every role shares: response-token logits of (prompt + response) rows.

Notation: B rows, P prompt length (left-padded), R response length (right-padded), V vocab.
"""

from __future__ import annotations

import torch

from rlhf.data.batch import Batch


def response_logits(model: torch.nn.Module, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Logits that predict each response token, divided by the sampling temperature.

    The rows are `prompt_ids ++ response_ids`; positions come from the attention mask so that
    left padding does not shift them. Only the last R + 1 positions are projected onto the
    vocabulary (`logits_to_keep`), so prompt positions cost no [P, V] logits.

    Returns:
        [B, R, V] logits; row b, column t scores response token t.
    """
    prompt_ids, response_ids = batch["prompt_ids"], batch["response_ids"]
    device = next(model.parameters()).device
    input_ids = torch.cat([prompt_ids, response_ids], dim=1).to(device)
    attention_mask = torch.cat([batch["prompt_mask"], batch["response_mask"]], dim=1).to(device)
    position_ids = (attention_mask.cumsum(dim=-1) - 1).clamp(min=0)
    response_len = response_ids.shape[1]
    output = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=response_len + 1, use_cache=False)
    logits = output.logits[:, :-1]
    return logits / temperature if temperature != 1.0 else logits
