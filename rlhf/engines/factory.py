"""Choose and build the training engine a recipe's `train` section names."""

from __future__ import annotations

import torch

from rlhf.config.training_schema import TrainConfig
from rlhf.engines.base import OptimConfig, TrainingEngine
from rlhf.engines.torch_engine import TorchEngine


def build_engine(
    module: torch.nn.Module, optim: OptimConfig, train: TrainConfig, *, autocast_dtype: torch.dtype | None = None, bucket_mb: int = 256,
    collective_timeout_s: float = 1800.0,
) -> TrainingEngine:
    """A TorchEngine or (importing DeepSpeed only then) a DeepSpeedEngine over `module`;
    `bucket_mb` bounds the ZeRO-3 gathers of a weight sync (`sync.bucket_mb`), and
    `collective_timeout_s` every collective (`distributed.timeout_s`)."""
    if train.gradient_checkpointing:
        enable_gradient_checkpointing(module)
    if train.engine == "torch":
        return TorchEngine(module, optim, autocast_dtype=autocast_dtype)
    if train.engine == "deepspeed":
        from rlhf.engines.deepspeed_engine import DeepSpeedEngine

        return DeepSpeedEngine(
            module, optim, zero_stage=train.zero_stage, offload_optimizer=train.offload_optimizer,
            offload_params=train.offload_params, autocast_dtype=autocast_dtype,
            weight_bucket_bytes=bucket_mb * 2**20, collective_timeout_s=collective_timeout_s,
        )
    raise ValueError(f"unknown train.engine {train.engine!r}; valid: torch, deepspeed")


def enable_gradient_checkpointing(module: torch.nn.Module) -> None:
    """Turn on activation recomputation in `module` (a transformers model, or a value model
    whose `backbone` is one)."""
    model = module if hasattr(module, "gradient_checkpointing_enable") else getattr(module, "backbone", None)
    if model is None or not hasattr(model, "gradient_checkpointing_enable"):
        raise ValueError(f"train.gradient_checkpointing: {type(module).__name__} does not support it")
    # non-reentrant: works with frozen inputs and with ZeRO-3's parameter hooks
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
