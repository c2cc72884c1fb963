"""Plain-PyTorch training engine: one process, AdamW, grad clipping, fp32 or bf16 autocast,
float32 or bfloat16 weights (the latter with float32 master weights)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch

from rlhf.engines.base import OptimConfig, lr_multiplier
from rlhf.engines.guards import is_finite, poison_if_nonfinite
from rlhf.engines.master_weights import MasterWeights
from rlhf.models.lora import checkpoint_state, load_checkpoint_state


class TorchEngine:
    """Trains `module` in place.

    With `param_dtype` float32 (the default) weights, gradients and AdamW state are float32,
    and `autocast_dtype` (e.g. torch.bfloat16) only lowers the precision of the forward
    computation. With `param_dtype` torch.bfloat16 the module's parameters are cast to
    bfloat16 here, and AdamW steps float32 master weights instead
    (:mod:`rlhf.engines.master_weights`); the recipe then autocasts to bfloat16 too, which
    casts no weight and only keeps the ops autocast lists as float32 ones in float32."""

    def __init__(self, module: torch.nn.Module, optim: OptimConfig, *, autocast_dtype: torch.dtype | None = None,
                 param_dtype: torch.dtype = torch.float32):
        self.module = module
        self.optim_config = optim
        self.autocast_dtype = autocast_dtype
        self.master = MasterWeights(module, param_dtype) if param_dtype != torch.float32 else None
        params = self.master.masters if self.master else [p for p in module.parameters() if p.requires_grad]
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
        if self.master:
            self.master.accumulate_grads()

    def step(self) -> torch.Tensor:
        """Clip, step AdamW and the schedule, zero the grads; returns the grad norm before
        clipping (of the float32 master gradients under bfloat16 weights). A non-finite norm
        skips the step (see :mod:`rlhf.engines.guards`)."""
        max_norm = self.optim_config.grad_clip if self.optim_config.grad_clip > 0 else float("inf")
        if self.master:
            self.master.accumulate_grads()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.master.masters if self.master else self.module.parameters(), max_norm)
        if is_finite(grad_norm):
            self.optimizer.step()
            self.scheduler.step()
            if self.master:
                self.master.copy_to_module()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm.detach()

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The module's parameters as it computes with them (bfloat16 under bfloat16 weights:
        what the trainer's forward uses is what the rollout engine must get), not copies."""
        for name, param in self.module.named_parameters():
            yield name, param.detach()

    def save_checkpoint(self, directory: str | Path) -> None:
        """Weights (only the adapters under LoRA), AdamW moments and the LR schedule's position,
        and under bfloat16 weights their float32 masters, in `directory/engine.pt`."""
        state = {"module": checkpoint_state(self.module), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        if self.master:
            state["master_weights"] = self.master.state_dict()
        torch.save(state, Path(directory) / "engine.pt")

    def load_checkpoint(self, directory: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote (tensors and numbers only: weights_only)."""
        path = Path(directory) / "engine.pt"
        state = torch.load(path, map_location=self.device, weights_only=True)
        load_checkpoint_state(self.module, state["module"], str(directory))
        if self.master:
            if "master_weights" not in state:
                raise RuntimeError(f"{path} holds float32 weights without master copies; it was written with model.param_dtype=float32")
            self.master.load_state_dict(state["master_weights"], str(path))
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
