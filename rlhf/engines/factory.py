"""Build the training engine a recipe's `train` section names, with its model-level options."""

from __future__ import annotations

import torch

from rlhf.config.training_schema import TrainConfig
from rlhf.engines.base import OptimConfig, TrainingEngine
from rlhf.engines.registry import training_engine


def build_engine(
    module: torch.nn.Module, optim: OptimConfig, train: TrainConfig, *, autocast_dtype: torch.dtype | None = None,
    param_dtype: torch.dtype = torch.float32, bucket_mb: int = 256, collective_timeout_s: float = 1800.0,
) -> TrainingEngine:
    """The engine `train.engine` names (:mod:`rlhf.engines.registry`) over `module`, holding its
    weights in `param_dtype` (`model.param_dtype`: bfloat16 adds float32 master weights);
    `bucket_mb` bounds the ZeRO-3 gathers of a weight sync (`sync.bucket_mb`), and
    `collective_timeout_s` every collective (`distributed.timeout_s`)."""
    if train.gradient_checkpointing:
        enable_gradient_checkpointing(module)
    return training_engine(train.engine).build(module, optim, train, autocast_dtype=autocast_dtype, param_dtype=param_dtype,
                                               bucket_mb=bucket_mb, collective_timeout_s=collective_timeout_s)


def enable_gradient_checkpointing(module: torch.nn.Module) -> None:
    """Turn on activation recomputation in `module` (a transformers model, or a value model
    whose `backbone` is one)."""
    model = module if hasattr(module, "gradient_checkpointing_enable") else getattr(module, "backbone", None)
    if model is None or not hasattr(model, "gradient_checkpointing_enable"):
        raise ValueError(f"train.gradient_checkpointing: {type(module).__name__} does not support it")
    # non-reentrant: works with frozen inputs and with ZeRO-3's parameter hooks
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
