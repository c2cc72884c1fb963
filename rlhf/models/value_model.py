"""A value model: a causal LM's transformer backbone with a linear head on every position.

The head has one output (a scalar value, for the mse critic) or K outputs (logits over the K
bins of an HL-Gauss classification critic, Farebrother et al. 2024). It is zero-initialised,
so a fresh critic predicts 0 (mse) or the centre of the support (uniform bins, HL-Gauss) and
its first updates come from the returns alone, not from a random projection.

On disk a value model is the backbone in Hugging Face format plus `value_head.safetensors`;
a reward model saved this way can initialise a critic (`critic.path`).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, PreTrainedModel

from rlhf.models.load import warn_remote_code

HEAD_FILE = "value_head.safetensors"


class ValueModel(torch.nn.Module):
    """`backbone` (a transformers base model returning `last_hidden_state`) + `head`."""

    def __init__(self, backbone: PreTrainedModel, num_outputs: int = 1):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(backbone.config.hidden_size, num_outputs)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)

    @property
    def num_outputs(self) -> int:
        return self.head.out_features

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, keep_last: int) -> torch.Tensor:
        """Head outputs of the last `keep_last` positions.

        Args:
            input_ids, attention_mask, position_ids: [B, T].
        Returns:
            [B, keep_last, num_outputs] float32 (the head runs in float32 even under autocast).
        """
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False).last_hidden_state
        with torch.autocast(hidden.device.type, enabled=False):
            return self.head(hidden[:, -keep_last:].float())

    def save_pretrained(self, directory: str | Path) -> None:
        """The backbone in Hugging Face format and the head as `value_head.safetensors`."""
        directory = Path(directory)
        self.backbone.save_pretrained(directory)
        save_file({k: v.detach().contiguous() for k, v in self.head.state_dict().items()}, str(directory / HEAD_FILE))


def value_model_from_policy(policy: PreTrainedModel, num_outputs: int) -> ValueModel:
    """A value model whose backbone is a copy of `policy`'s (the usual PPO critic init)."""
    return ValueModel(copy.deepcopy(policy.base_model), num_outputs)


def load_value_model(path: str, num_outputs: int, device: torch.device, trust_remote_code: bool = False) -> ValueModel:
    """The backbone of the checkpoint at `path` (a causal LM or a saved value model), with its
    saved head when `value_head.safetensors` exists and has `num_outputs` outputs."""
    if trust_remote_code:
        warn_remote_code(path)
    backbone = AutoModel.from_pretrained(path, trust_remote_code=trust_remote_code, dtype=torch.float32)
    model = ValueModel(backbone, num_outputs)
    head_file = Path(path) / HEAD_FILE
    if head_file.exists():
        state = load_file(str(head_file))
        if state["weight"].shape[0] != num_outputs:
            raise ValueError(
                f"{head_file}: the saved value head has {state['weight'].shape[0]} outputs but the "
                f"critic needs {num_outputs} (critic.loss / critic.hl_gauss.num_bins)"
            )
        model.head.load_state_dict(state)
    return model.to(device)
