"""The training engines a recipe's `train.engine` can name, each declared once.

An entry says everything the rest of the code may ask of an engine: how to build it, whether
several data-parallel ranks can train one model with it, whether it partitions the module it
trains (so that nothing else can generate with that module), how it shards the training
state (what `rlhf plan` counts), which `train.*` keys it accepts, and whether it can run on
this machine (`rlhf doctor`). Nothing outside this file compares `train.engine` with a name.

Adding an engine is one module with the :class:`~rlhf.engines.base.TrainingEngine` protocol
and one entry here. The backends themselves (DeepSpeed) are imported only when an engine is
built or checked.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from rlhf.config.schema import ModelConfig
from rlhf.config.training_schema import TrainConfig
from rlhf.engines.base import OptimConfig, TrainingEngine


@dataclass(frozen=True)
class Sharding:
    """How an engine holds the training state on each of its ranks (for `rlhf plan`)."""

    zero_stage: int = 0
    """0: replicated; 1: optimiser state sharded; 2: + gradients; 3: + parameters."""
    offload_optimizer: bool = False
    offload_params: bool = False
    gradients_resident: bool = False
    """Gradient buffers live through the whole run (False: freed after each optimiser step)."""


@dataclass(frozen=True)
class TrainingEngineSpec:
    """One training engine: what the rest of the code may ask of it."""

    name: str
    summary: str
    build: Callable[..., TrainingEngine]
    """(module, OptimConfig, TrainConfig, *, autocast_dtype, param_dtype, bucket_mb, collective_timeout_s) -> engine."""
    data_parallel: bool
    """Several ranks of a worker group can train one model with it (gradients averaged)."""
    partitions_module: Callable[[TrainConfig], bool]
    """True when the trained module is partitioned in place: a rollout engine needs a copy."""
    sharding: Callable[[TrainConfig], Sharding]
    option_errors: Callable[[TrainConfig, ModelConfig], Iterable[str]]
    """Messages for `train.*` keys (and the `model.param_dtype` under them) this engine cannot honour."""
    availability: Callable[[], tuple[bool, str]]
    """(usable here, why or what): `rlhf doctor`."""
    check_environment: Callable[[], None] = lambda: None
    """Raises a ConfigError for what in this process's environment would break a local run
    (before the run creates its directory)."""

    def describe(self, train: TrainConfig) -> str:
        """The engine and its sharding, for messages ('deepspeed ZeRO-3')."""
        stage = self.sharding(train).zero_stage
        return f"{self.name} ZeRO-{stage}" if self.data_parallel else self.name


def _build_torch(module, optim: OptimConfig, train: TrainConfig, *, autocast_dtype=None, param_dtype=torch.float32, bucket_mb: int = 256,
                 collective_timeout_s: float = 1800.0):
    from rlhf.engines.torch_engine import TorchEngine

    return TorchEngine(module, optim, autocast_dtype=autocast_dtype, param_dtype=param_dtype)


def _torch_option_errors(train: TrainConfig, model: ModelConfig) -> Iterable[str]:
    if train.zero_stage or train.offload_optimizer or train.offload_params:
        yield "train.engine: 'torch' has no ZeRO or offloading; set train.engine=deepspeed to use train.zero_stage/offload_*"


def _build_deepspeed(module, optim: OptimConfig, train: TrainConfig, *, autocast_dtype=None, param_dtype=torch.float32, bucket_mb: int = 256,
                     collective_timeout_s: float = 1800.0):
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine

    return DeepSpeedEngine(
        module, optim, zero_stage=train.zero_stage, offload_optimizer=train.offload_optimizer, offload_params=train.offload_params,
        autocast_dtype=autocast_dtype, weight_bucket_bytes=bucket_mb * 2**20, collective_timeout_s=collective_timeout_s, param_dtype=param_dtype,
    )


def _deepspeed_option_errors(train: TrainConfig, model: ModelConfig) -> Iterable[str]:
    if train.offload_optimizer and train.zero_stage < 1:
        yield f"train.offload_optimizer: needs train.zero_stage >= 1 (got {train.zero_stage})"
    if train.offload_params and train.zero_stage != 3:
        yield f"train.offload_params: needs train.zero_stage 3 (got {train.zero_stage})"
    if model.param_dtype == "bfloat16" and train.zero_stage < 1:
        yield (f"model.param_dtype: 'bfloat16' with train.engine=deepspeed needs train.zero_stage >= 1 (got {train.zero_stage}): "
               "DeepSpeed keeps float32 master weights only in its ZeRO optimisers, and at stage 0 it would train the bfloat16 "
               "weights themselves; set train.zero_stage=1 (or 2, 3), or train.engine=torch")


def _deepspeed_environment() -> None:
    from rlhf.engines.launcher_env import check_launcher_env

    check_launcher_env()


def _deepspeed_availability() -> tuple[bool, str]:
    try:
        importlib.import_module("deepspeed")
    except Exception as error:  # an installed package that fails to import is a finding
        return False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    from importlib.metadata import version

    compiler = shutil.which("g++") or shutil.which("c++")
    note = "" if compiler or torch.cuda.is_available() else "; no C++ compiler: CPU offload (CPU Adam) cannot be built"
    return True, f"deepspeed {version('deepspeed')}{note}"


TRAINING_ENGINES: dict[str, TrainingEngineSpec] = {
    "torch": TrainingEngineSpec(
        name="torch", summary="plain PyTorch AdamW in one process",
        build=_build_torch, data_parallel=False, partitions_module=lambda train: False,
        sharding=lambda train: Sharding(), option_errors=_torch_option_errors,
        availability=lambda: (True, f"torch {torch.__version__}"),
    ),
    "deepspeed": TrainingEngineSpec(
        name="deepspeed", summary="DeepSpeed ZeRO stages 0-3 with optional CPU offload (pip install deepspeed)",
        build=_build_deepspeed, data_parallel=True, partitions_module=lambda train: train.zero_stage == 3,
        sharding=lambda train: Sharding(train.zero_stage, train.offload_optimizer, train.offload_params, gradients_resident=True),
        option_errors=_deepspeed_option_errors, availability=_deepspeed_availability, check_environment=_deepspeed_environment,
    ),
}
"""`train.engine` -> its entry."""


def training_engine(name: str) -> TrainingEngineSpec:
    """The entry registered as `name`; an unknown name lists the valid ones."""
    try:
        return TRAINING_ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown train.engine {name!r}; valid: {', '.join(TRAINING_ENGINES)}") from None
