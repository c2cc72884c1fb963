"""The reference policy: a frozen model that scores responses for the KL term."""

from __future__ import annotations

from typing import Iterable

import torch

from rlhf.data.batch import Batch
from rlhf.data.padding import map_micro_batches
from rlhf.dispatch import SPLIT, dispatch
from rlhf.workers.forward import response_logprobs


class RefWorker:
    """Log-probabilities of responses under a frozen model."""

    def __init__(self, model: torch.nn.Module, *, temperature: float, micro_batch_size: int, max_tokens: int = 0):
        self.model = model.eval().requires_grad_(False)
        self.temperature = temperature
        self.micro_batch_size, self.max_tokens = micro_batch_size, max_tokens

    @dispatch(SPLIT)
    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 log-probabilities of `response_ids`."""
        return map_micro_batches(batch, self.micro_batch_size, self._forward, self.max_tokens)

    def _forward(self, micro: Batch) -> torch.Tensor:
        return response_logprobs(self.model, micro, self.temperature)[0].cpu()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The reference weights, for checkpoints (the dynamic anchor moves them)."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)

    @torch.no_grad()
    def follow(self, named_weights: Iterable[tuple[str, torch.Tensor]], ema: float = 0.0) -> None:
        """Move the reference towards the policy: ref ← ema·ref + (1 − ema)·policy for every
        weight (`ema` = 0 copies the policy). T1's dynamic anchor (Hou et al. 2025)."""
        own = dict(self.model.named_parameters())
        for name, tensor in named_weights:
            if name not in own:
                raise KeyError(f"the reference model has no weight {name!r}: it does not have the policy's architecture")
            own[name].lerp_(tensor.to(own[name].device, own[name].dtype), 1.0 - ema)


class AdapterDisabledRef:
    """The reference policy as the actor's own LoRA model with its adapter switched off: under
    LoRA the frozen base *is* the initial policy, so no second copy of the model is kept.

    Only for a fixed reference (no `ref.path`, no dynamic anchor) in the actor's process."""

    def __init__(self, peft_model: torch.nn.Module, *, temperature: float, micro_batch_size: int, max_tokens: int = 0):
        self.model = peft_model
        self.temperature = temperature
        self.micro_batch_size, self.max_tokens = micro_batch_size, max_tokens

    @dispatch(SPLIT)
    @torch.no_grad()
    def compute_logprobs(self, batch: Batch) -> torch.Tensor:
        """[B, R] float32 log-probabilities of `response_ids` under the base model."""
        was_training = self.model.training
        self.model.eval()
        try:
            with self.model.disable_adapter():
                return map_micro_batches(batch, self.micro_batch_size, self._forward, self.max_tokens)
        finally:
            self.model.train(was_training)

    def _forward(self, micro: Batch) -> torch.Tensor:
        return response_logprobs(self.model, micro, self.temperature)[0].cpu()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Nothing: the base weights are frozen and come back with the actor's model."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            raise RuntimeError("the checkpoint holds reference weights, but this run's reference is the actor's LoRA base (ref.path or ref.anchor changed?)")
