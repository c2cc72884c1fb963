"""Choose and build the rollout engine a recipe's `rollout.engine` names."""

from __future__ import annotations

import copy

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.models.load import DTYPES
from rlhf.rollout.base import RolloutEngine
from rlhf.rollout.hf import HFRolloutEngine


def build_rollout(config: RecipeConfig, model: torch.nn.Module | None, tokenizer, model_path: str, *, share_module: bool = True, seed_offset: int = 0) -> RolloutEngine:
    """The rollout engine of a run.

    Args:
        model: the policy module in this process (needed by the HF engine).
        model_path: the checkpoint vLLM loads its initial weights from.
        share_module: the HF engine generates with `model` itself (a weight sync then moves no
            bytes); False gives it its own copy (the trainer's module is ZeRO-3 partitioned).
        seed_offset: added to `trainer.seed` (each data-parallel rank samples differently;
            the ranks of one tensor-parallel vLLM engine must pass the same offset).
    """
    rollout = config.rollout
    dtype = DTYPES[config.model.dtype]
    autocast = None if dtype == torch.float32 else dtype
    if rollout.engine == "hf":
        module = model if share_module else copy.deepcopy(model)
        return HFRolloutEngine(module, tokenizer, micro_batch_size=rollout.micro_batch_size, autocast_dtype=autocast)
    if rollout.engine == "vllm":
        from rlhf.rollout.vllm_engine import VLLMRolloutEngine

        vllm = rollout.vllm
        return VLLMRolloutEngine(
            model_path, tokenizer, tensor_parallel_size=vllm.tensor_parallel_size, gpu_memory_utilization=vllm.gpu_memory_utilization,
            dtype=config.model.dtype, seed=config.trainer.seed + seed_offset, max_model_len=vllm.max_model_len,
            enable_sleep_mode=vllm.enable_sleep_mode, kv_cache_gb=vllm.kv_cache_gb, enforce_eager=vllm.enforce_eager,
            trust_remote_code=config.model.trust_remote_code, **tensor_parallel_kwargs(vllm.tensor_parallel_size),
        )
    raise ValueError(f"unknown rollout.engine {rollout.engine!r}; valid: hf, vllm")


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
