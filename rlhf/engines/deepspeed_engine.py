"""DeepSpeed training engine: ZeRO stages 0-3, optional CPU offload, same protocol as TorchEngine.

DeepSpeed is imported only here (``import rlhf`` stays light). Its accelerator is detected
automatically: CUDA when a GPU is visible, otherwise the CPU accelerator (DeepSpeed's warning
that it fell back to it shows with ``rlhf --verbose``; set ``DS_ACCELERATOR=cpu`` to force it). On CPU the process group uses
gloo; ops that DeepSpeed JIT-compiles (the CPU Adam of ``offload_optimizer``) are built once
with the local C++ compiler into ``~/.cache/torch_extensions``.

How the workers' calls map onto DeepSpeed:

* ``backward(loss)`` is called once per micro-batch with a loss the worker has already weighted
  by the micro-batch's share of its mini-batch, and ``step()`` once per mini-batch. DeepSpeed
  runs with ``managed_gradient_accumulation: false`` and ``gradient_accumulation_steps: 1``, so
  it neither counts micro-steps nor divides the loss again: every ``step()`` is exactly one
  optimiser step over what the preceding ``backward`` calls accumulated.
* With ``param_dtype`` float32 weights and optimiser state stay float32, as in
  :class:`TorchEngine`; ``autocast_dtype`` (e.g. torch.bfloat16) lowers only the forward
  computation through ``torch.autocast``. With ``param_dtype`` torch.bfloat16 DeepSpeed's own
  ``bf16`` mode holds the module in bfloat16 and its ZeRO optimiser keeps float32 master
  partitions and float32 AdamW state (stages 1-3; at stage 0 DeepSpeed would train the bfloat16
  weights themselves, so it is refused). The masters start from the module's float32 values
  (set after DeepSpeed's cast, which rounds them). Autocast to the same bfloat16 is harmless
  over bfloat16 weights, and DeepSpeed's own autocast (``torch_autocast``) stays off.
* The LR schedule is a ``LambdaLR`` over :func:`rlhf.engines.base.lr_multiplier`, the same
  function TorchEngine uses, and DeepSpeed steps it once per optimiser step.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from rlhf.engines.base import OptimConfig, lr_multiplier
from rlhf.engines.buckets import buckets
from rlhf.engines.guards import is_finite, poison_if_nonfinite
from rlhf.engines.launcher_env import check_launcher_env
from rlhf.engines.safe_load import weights_only_loads
from rlhf.logging.quiet import held_stdout, quiet_libraries
from rlhf.models.lora import is_lora_model

WEIGHT_BUCKET_BYTES = 256 * 2**20
"""Default of the most bytes of ZeRO-3 parameters :meth:`named_weights` gathers at a time."""

CHECKPOINT_TAG = "engine"
"""DeepSpeed checkpoint tag: ``save_checkpoint(dir)`` writes ``dir/engine/`` and ``dir/latest``."""


def import_deepspeed():
    """The deepspeed module, or an ImportError naming the extra to install."""
    quiet_libraries()
    try:
        import deepspeed
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("train.engine=deepspeed needs DeepSpeed: pip install 'rlhf[deepspeed]' (or pip install deepspeed)") from error
    return deepspeed


def init_distributed(timeout_s: float = 1800.0) -> None:
    """Join (or, alone, create) the default process group: gloo on CPU, nccl on CUDA; a
    collective that waits longer than `timeout_s` (a dead or hung peer) raises instead of
    hanging (`distributed.timeout_s`; Ray workers join their group with it beforehand).

    A single process without launcher variables becomes rank 0 of a world of 1 on a free port;
    variables left over in the environment that cannot be right stop it at once
    (:func:`rlhf.engines.launcher_env.check_launcher_env`).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    check_launcher_env()
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed = import_deepspeed()
    # groups DeepSpeed cached under a default group someone else destroyed since (vLLM's
    # shutdown does) are dead: forget them, or DeepSpeed would hand them out again
    release = getattr(importlib.import_module("deepspeed.utils.groups"), "_release_process_group_references", None)
    if release is not None:
        release(None)
    with held_stdout():  # "DeepSpeed ... built successfully" of each communication op it loads
        deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=datetime.timedelta(seconds=timeout_s))


def deepspeed_config(
    optim: OptimConfig, *, zero_stage: int, offload_optimizer: bool = False, offload_params: bool = False,
    micro_batch_size: int = 1, bf16: bool = False,
) -> dict[str, Any]:
    """The DeepSpeed config dict of one engine (a pure function of our settings).

    Args:
        optim: optimiser and schedule (the schedule itself is a LambdaLR, not in this dict).
        zero_stage: 0 (plain data parallel) to 3 (parameters partitioned too).
        offload_optimizer: keep optimiser state on the CPU and step it there (stage >= 1).
        offload_params: keep partitioned parameters on the CPU (stage 3).
        micro_batch_size: only informs DeepSpeed's throughput logs; it never batches data.
        bf16: bfloat16 module, float32 master weights in the ZeRO optimiser (stage >= 1).
    """
    if bf16 and zero_stage < 1:
        raise ValueError("DeepSpeed's bf16 mode keeps float32 master weights only in its ZeRO optimisers (zero_stage >= 1)")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    zero: dict[str, Any] = {"stage": zero_stage}
    if offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu"}
    if offload_params:
        zero["offload_param"] = {"device": "cpu"}
    return {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "train_batch_size": micro_batch_size * world_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        # stage 0: DeepSpeedEngine.step clips itself, to report the norm
        "gradient_clipping": optim.grad_clip if zero_stage > 0 else 0.0,
        "optimizer": {
            "type": "AdamW",
            # torch's AdamW on the device, as TorchEngine; offloading needs DeepSpeed's CPU Adam
            "params": {"lr": optim.lr, "betas": list(optim.betas), "eps": 1e-8, "weight_decay": optim.weight_decay, "torch_adam": not offload_optimizer},
        },
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        # bf16 gradients are reduced and accumulated by ZeRO; its fp32 accumulation option
        # (data_types.grad_accum_dtype) switches stage 1 to an optimiser that does not add up
        # the micro-batches of our backward/step protocol
        "bf16": {"enabled": bf16},
        "fp16": {"enabled": False},
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


class DeepSpeedEngine:
    """Trains `module` in place through a DeepSpeed engine (see the module docstring).

    `module` stays the object the workers call for forward passes; under ZeRO-3 DeepSpeed's
    hooks on it gather each layer's parameters during forward and backward.
    """

    def __init__(
        self, module: torch.nn.Module, optim: OptimConfig, *, zero_stage: int = 0, offload_optimizer: bool = False,
        offload_params: bool = False, autocast_dtype: torch.dtype | None = None, weight_bucket_bytes: int = WEIGHT_BUCKET_BYTES,
        collective_timeout_s: float = 1800.0, param_dtype: torch.dtype = torch.float32,
    ):
        deepspeed = import_deepspeed()
        init_distributed(collective_timeout_s)
        self.optim_config = optim
        self.zero_stage = zero_stage
        self.autocast_dtype = autocast_dtype
        self.weight_bucket_bytes = weight_bucket_bytes
        self.device = next(module.parameters()).device
        bf16 = param_dtype == torch.bfloat16
        config = deepspeed_config(optim, zero_stage=zero_stage, offload_optimizer=offload_optimizer, offload_params=offload_params, bf16=bf16)
        schedule = lambda step: lr_multiplier(step, optim.warmup_steps, optim.total_steps, optim.lr_schedule)
        params = [p for p in module.parameters() if p.requires_grad]
        # DeepSpeed casts each p.data to bf16; the float32 tensors live on here until the masters are set
        float32_values = [p.data for p in params] if bf16 else []
        with held_stdout():  # where the process group came from elsewhere (a Ray worker), DeepSpeed loads its ops here
            self.ds_engine, _, _, _ = deepspeed.initialize(
                model=module, model_parameters=params, config=config,
                lr_scheduler=lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
            )
        if bf16:
            _set_float32_masters(params, float32_values)
        if zero_stage == 0:
            self.ds_engine.enable_backward_allreduce = False  # step() reduces stage-0 gradients itself
        self.module = module

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed's own forward() marks the end of the previous backward, which makes the
        # ZeRO optimisers add the next micro-batch's gradients instead of overwriting them;
        # the workers call `module` directly, so mark it here.
        optimizer = self.ds_engine.optimizer
        if hasattr(optimizer, "clear_backward_seen_flag"):
            optimizer.clear_backward_seen_flag()
        self.ds_engine.backward(poison_if_nonfinite(loss), scale_wrt_gas=False)

    def step(self) -> torch.Tensor:
        """Reduce the accumulated gradients, clip, step AdamW and the schedule, zero the grads;
        returns the global grad norm before clipping. A non-finite norm skips the step: ZeRO's
        optimisers treat it as an overflow, stage 0 is checked here (:mod:`rlhf.engines.guards`)."""
        if self.zero_stage == 0:
            # DeepSpeed clips stage-0 gradients without reporting the norm: reduce and clip
            # here (DeepSpeed's own reduction and clipping are switched off in __init__)
            self.ds_engine.allreduce_gradients()
            max_norm = self.optim_config.grad_clip if self.optim_config.grad_clip > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm).detach()
            if not is_finite(grad_norm):
                self.ds_engine.zero_grad()
                return grad_norm
        self.ds_engine.step()
        if self.zero_stage > 0:
            grad_norm = torch.as_tensor(float(self.ds_engine.get_global_grad_norm()))
        self.ds_engine.zero_grad()
        return grad_norm

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full parameters as the module computes with them (float32, or bfloat16 in bf16
        mode: what the trainer's forward uses is what the rollout engine must get). Under
        ZeRO-3 they are gathered in buckets of at most `weight_bucket_bytes` and yielded as
        copies, so the whole model is never held twice; every rank must iterate to the end
        (each bucket is a collective)."""
        if self.zero_stage < 3:
            for name, param in self.module.named_parameters():
                yield name, param.detach()
            return
        for bucket in buckets(self.module.named_parameters(), self.weight_bucket_bytes, nbytes=_full_bytes):
            with import_deepspeed().zero.GatheredParameters([param for _, param in bucket], modifier_rank=None):
                gathered = [(name, param.detach().clone()) for name, param in bucket]
            yield from gathered

    @property
    def lr(self) -> float:
        return self.ds_engine.get_lr()[0]

    @property
    def dp_size(self) -> int:
        """Data-parallel ranks whose gradients DeepSpeed averages at each step."""
        return torch.distributed.get_world_size()

    def dp_sum(self, value: float) -> float:
        """`value` summed over the data-parallel ranks (a collective: every rank calls it)."""
        if self.dp_size == 1:
            return value
        return float(self._all_reduce(value, torch.distributed.ReduceOp.SUM))

    def dp_max(self, value: int) -> int:
        """The largest `value` of the data-parallel ranks (a collective: every rank calls it)."""
        return value if self.dp_size == 1 else int(self._all_reduce(value, torch.distributed.ReduceOp.MAX))

    def _all_reduce(self, value: float, op) -> float:
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device if torch.distributed.get_backend() == "nccl" else "cpu")
        torch.distributed.all_reduce(tensor, op=op)
        return float(tensor.item())

    @property
    def rank(self) -> int:
        return torch.distributed.get_rank()

    def save_checkpoint(self, directory: str | Path) -> None:
        """DeepSpeed's sharded checkpoint (weights, optimiser and schedule state) in `directory`;
        every rank must call it. Under LoRA the frozen base is left out (only the adapters)."""
        self.ds_engine.save_checkpoint(str(directory), tag=CHECKPOINT_TAG, exclude_frozen_parameters=is_lora_model(self.module))

    def load_checkpoint(self, directory: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote (same world size and ZeRO stage), loading
        data only (:func:`rlhf.engines.safe_load.weights_only_loads`)."""
        with weights_only_loads():
            path, _ = self.ds_engine.load_checkpoint(
                str(directory), tag=CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True,
                load_module_strict=not is_lora_model(self.module),  # a LoRA checkpoint holds only the adapters
            )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {directory}")

    def export_hf(self, directory: str | Path, tokenizer=None) -> None:
        """Full weights in Hugging Face format (safetensors), written by rank 0; every rank must
        call it (ZeRO-3 gathers the parameters collectively)."""
        gather = contextlib.nullcontext()
        if self.zero_stage == 3:
            gather = import_deepspeed().zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None)
        with gather:
            if self.rank == 0:
                self.module.save_pretrained(directory)
                if tokenizer is not None:
                    tokenizer.save_pretrained(directory)
        torch.distributed.barrier()


def _full_bytes(param: torch.nn.Parameter) -> int:
    """Bytes of the whole parameter (ZeRO-3 keeps its element count in `ds_numel`)."""
    return _full_numel(param) * param.element_size()


def _set_float32_masters(params: list[torch.nn.Parameter], float32_values: list[torch.Tensor]) -> None:
    """Make DeepSpeed's float32 master of each parameter its value before DeepSpeed rounded the
    module to bfloat16 (it builds the masters from the rounded module). Each rank sets the part
    of the master it holds; the module's bfloat16 copy already is that value rounded."""
    from deepspeed.utils import safe_set_full_fp32_param

    for param, value in zip(params, float32_values):
        safe_set_full_fp32_param(param, value.to(param.device))


def _full_numel(param: torch.nn.Parameter) -> int:
    """Element count of the whole parameter (ZeRO-3 keeps it in `ds_numel`)."""
    return getattr(param, "ds_numel", param.numel())
