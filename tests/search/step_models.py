"""Tiny models that write reasoning steps, for the step-generation tests (importable as
`step_models` from tests/search)."""

import torch
from tiny_helpers import sharpen_weights

from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model


def step_model(directory, *, period: int = 7, eos_bias: float = 0.0):
    """A tiny Llama (sharpened weights) whose logits are steered by its positions: the tokens at
    positions p with p % period in the last two slots are forced to be newlines, and no other
    token is, so its text is lines of `period` - 2 characters, each followed by a blank line
    ("\\n\\n": two tokens of the character tokenizer). `eos_bias` raises the EOS logit (random
    early ends when sampling). Returns (model, tokenizer)."""
    path = build_tiny_model(directory, seed=0)
    model, tokenizer = sharpen_weights(load_causal_lm(str(path), torch.device("cpu"))).eval(), load_tokenizer(str(path))
    newline, eos = tokenizer("\n", add_special_tokens=False)["input_ids"][0], tokenizer.eos_token_id
    specials = [token for token in tokenizer.all_special_ids if token != eos]
    positions = {}

    def remember_positions(module, args, kwargs):
        positions["ids"] = kwargs["position_ids"]

    def steer(module, inputs, logits):
        # position of the token these logits choose: one after the input position they sit at
        chosen = positions["ids"][:, -logits.shape[1]:] + 1
        bias = torch.zeros_like(logits)
        bias[..., specials] = -40.0
        bias[..., newline] = torch.where(chosen % period >= period - 2, 40.0, -40.0)
        bias[..., eos] = torch.where(chosen % period >= period - 2, -40.0, eos_bias)
        return logits + bias

    model.register_forward_pre_hook(remember_positions, with_kwargs=True)
    model.lm_head.register_forward_hook(steer)
    return model, tokenizer
