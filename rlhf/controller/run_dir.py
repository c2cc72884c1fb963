"""The run directory: where a run's outputs go, and whether a launch may use it.

A directory holds at most one run; a launch either starts it, resumes it from its checkpoints,
or (a run killed before its first checkpoint) starts it afresh.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from rlhf.config.errors import ConfigError
from rlhf.config.loader import save_resolved, to_dict
from rlhf.config.schema import RecipeConfig


def prepare_output_dir(config: RecipeConfig, recipe_name: str) -> Path:
    """Create the run directory (refusing one that already holds a run) and save the config.

    Under `trainer.resume=auto`, a directory where the same run (equal resolved config) was
    started but stopped before its first checkpoint (killed) is started afresh: its logs go."""
    output_dir = Path(config.trainer.output_dir or f"runs/{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    config.trainer.output_dir = str(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"trainer.output_dir: {str(output_dir)!r} is a file, not a directory; choose another trainer.output_dir")
    resume = config.trainer.resume
    resumable = resume != "never" and (resume != "auto" or (output_dir / "checkpoints" / "latest").exists())
    if resume == "auto" and started_without_checkpoint(config, output_dir):
        for name in RUN_LOGS:
            (output_dir / name).unlink(missing_ok=True)
    if (output_dir / "metrics.jsonl").exists() and not resumable:
        raise ConfigError(
            f"trainer.output_dir: {str(output_dir)!r} already holds a run (metrics.jsonl) with no checkpoint to resume from "
            f"(trainer.resume={resume}); choose another directory or remove it"
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    save_resolved(config, output_dir / "config.yaml")
    return output_dir


RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "sft_metrics.jsonl", "summary.json")
"""What a run appends to or writes in its directory besides checkpoints and models."""


def started_without_checkpoint(config: RecipeConfig, output_dir: Path) -> bool:
    """Whether `output_dir` holds an earlier launch of this very run (its config.yaml is
    `config`) that wrote no checkpoint: a run killed early, whose logs a restart replaces."""
    saved = output_dir / "config.yaml"
    if not saved.exists() or (output_dir / "checkpoints" / "latest").exists():
        return False
    return yaml.safe_load(saved.read_text(encoding="utf-8")) == to_dict(config)
