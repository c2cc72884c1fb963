"""Plain-PyTorch training engine: one process, AdamW, grad clipping, fp32 or bf16 autocast."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from rlhf.engines.base import OptimConfig, lr_multiplier
from rlhf.engines.guards import is_finite, poison_if_nonfinite
from rlhf.models.lora import checkpoint_state, load_checkpoint_state


class TorchEngine:
    """Trains `module` in place. Weights and optimiser state stay float32; `autocast_dtype`
    (e.g. torch.bfloat16) only lowers the precision of the forward computation."""

    def __init__(self, module: torch.nn.Module, optim: OptimConfig, *, autocast_dtype: torch.dtype | None = None):
        self.module = module
        self.optim_config = optim
        self.autocast_dtype = autocast_dtype
        params = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay)
        schedule = lambda step: lr_multiplier(step, optim.warmup_steps, optim.total_steps, optim.lr_schedule)  # noqa: E731
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.device = next(module.parameters()).device

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        poison_if_nonfinite(loss).backward()

    def step(self) -> torch.Tensor:
        """Clip, step AdamW and the schedule, zero the grads; returns the grad norm before
        clipping. A non-finite norm skips the step (see :mod:`rlhf.engines.guards`)."""
        max_norm = self.optim_config.grad_clip if self.optim_config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm)
        if is_finite(grad_norm):
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach()

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, param in self.module.named_parameters():
            yield name, param.detach()

    def save_checkpoint(self, directory: str | Path) -> None:
        """Weights (only the adapters under LoRA), AdamW moments and the LR schedule's position,
        in `directory/engine.pt`."""
        state = {"module": checkpoint_state(self.module), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        torch.save(state, Path(directory) / "engine.pt")

    def load_checkpoint(self, directory: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote (tensors and numbers only: weights_only)."""
        state = torch.load(Path(directory) / "engine.pt", map_location=self.device, weights_only=True)
        load_checkpoint_state(self.module, state["module"], str(directory))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    dp_size = 1
    """One process: no data parallelism."""

    def dp_sum(self, value: float) -> float:
        return value

    def dp_max(self, value: int) -> int:
        return value

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
