"""Build the backends `trainer.loggers` names, and check at start that their packages exist.

Importing this module imports no backend: tensorboard, wandb and mlflow load only when
selected (they are optional: `pip install 'rlhf[loggers]'`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.logging.base import Logger, Loggers

LOGGERS = ("console", "jsonl", "tensorboard", "wandb", "mlflow")
"""Valid names in `trainer.loggers`; jsonl is required (see rlhf.config.validate)."""

PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "mlflow": ("mlflow", "mlflow-skinny")}
"""Optional backends: name -> (module to import, package to pip install)."""


def check_loggers(names: list[str]) -> None:
    """Raise a ConfigError naming `trainer.loggers` and the pip command when a selected
    backend's package is not installed (before a run loads any model)."""
    missing = [PACKAGES[name][1] for name in names if name in PACKAGES and importlib.util.find_spec(PACKAGES[name][0]) is None]
    if missing:
        raise ConfigError(f"trainer.loggers: {', '.join(missing)} not installed; pip install {' '.join(missing)} "
                          "(or pip install 'rlhf[loggers]'), or remove it from trainer.loggers")


def build_loggers(config, output_dir: Path, first_step: int = 1) -> Loggers:
    """The backends of `config.trainer.loggers` (a RecipeConfig) writing for `output_dir`;
    `first_step` > 1 when the run resumes after step first_step - 1."""
    names = list(dict.fromkeys(config.trainer.loggers))  # each backend once
    check_loggers(names)
    builders = _builders(config, Path(output_dir), first_step)
    backends: list[Logger] = []
    try:
        for name in names:
            backends.append(builders[name]())
    except BaseException:
        Loggers(backends).close()
        raise
    return Loggers(backends)


def _builders(config, output_dir: Path, first_step: int) -> dict[str, Callable[[], Logger]]:
    """One constructor per backend name; each imports its module only when called."""
    trainer = config.trainer
    name = trainer.experiment_name or output_dir.name

    def console() -> Logger:
        from rlhf.logging.console import ConsoleLogger

        return ConsoleLogger(trainer.total_steps, trainer.log_every, first_step)

    def jsonl() -> Logger:
        from rlhf.logging.jsonl import JsonlLogger

        return JsonlLogger(output_dir)

    def tensorboard() -> Logger:
        from rlhf.logging.tensorboard_logger import TensorBoardLogger

        return TensorBoardLogger(output_dir, first_step)

    def wandb() -> Logger:
        from rlhf.logging.wandb_logger import WandbLogger

        return WandbLogger(output_dir, trainer.project, name, dataclasses.asdict(config), first_step)

    def mlflow() -> Logger:
        from rlhf.logging.mlflow_logger import MlflowLogger

        return MlflowLogger(output_dir, trainer.project, name, first_step)

    return {"console": console, "jsonl": jsonl, "tensorboard": tensorboard, "wandb": wandb, "mlflow": mlflow}
