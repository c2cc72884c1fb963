"""The run directory: where a run's outputs go, and what a launch may do with what is there.

A launch of `rlhf train` (or `rlhf sft`) meets one of:

- no run: the directory is created, the resolved config saved as `config.yaml` and as
  `configs/launch_001.yaml`;
- a finished run (its newest checkpoint is at `trainer.total_steps` and `summary.json`
  exists): :func:`finished_run` says so and nothing is written;
- a run with a checkpoint (an RL one, or the SFT stage's, see :mod:`rlhf.controller.sft`):
  it resumes. The config is compared with the previous launch's
  (:mod:`rlhf.controller.resume_changes`): a change the checkpoint cannot follow is refused,
  before anything is written; the others are printed and the launch's config is saved as
  `configs/launch_NNN.yaml` (`config.yaml` stays the config the run started with);
- a run of the same config stopped before any checkpoint (killed): it starts afresh;
- anything else holding a run's metrics: refused.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rlhf.config.errors import ConfigError
from rlhf.config.loader import save_resolved, to_dict
from rlhf.config.schema import RecipeConfig
from rlhf.controller.resume_changes import Change, Resume, check_changes

CONFIG_FILE = "config.yaml"
"""The resolved config of the launch that started the run."""
LAUNCHES_DIR = "configs"
"""`launch_NNN.yaml`: the resolved config of every launch, 001 the first."""
SFT_CHECKPOINT = "sft_checkpoint"
"""The SFT stage's state when it was stopped before it finished (removed when it finishes)."""
SFT_STATE = "state.pt"
"""Written last into an SFT checkpoint (see rlhf.controller.sft.save_sft_checkpoint)."""
RUN_LOGS = ("metrics.jsonl", "samples.jsonl", "sft_metrics.jsonl", "summary.json")
"""What a run appends to or writes in its directory besides checkpoints and models."""


@dataclass
class FinishedRun:
    """A run directory whose run has nothing left to do at this `trainer.total_steps`."""

    output_dir: Path
    checkpoint: Path
    summary: dict
    ignored: list[Change] = field(default_factory=list)
    """Allowed changes of this launch, which there is nothing left to apply to."""


def run_directory(config: RecipeConfig, recipe_name: str) -> Path:
    """`trainer.output_dir` (a new timestamped directory when empty), written back into
    `config`; a ConfigError when it names a file."""
    output_dir = Path(config.trainer.output_dir or f"runs/{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    config.trainer.output_dir = str(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"trainer.output_dir: {str(output_dir)!r} is a file, not a directory; choose another trainer.output_dir")
    return output_dir


def prepare_output_dir(config: RecipeConfig, recipe_name: str) -> Path:
    """Create or reuse the run directory as the module docstring says, and record the launch."""
    output_dir = run_directory(config, recipe_name)
    resume = config.trainer.resume
    if resume == "auto" and started_without_checkpoint(config, output_dir):
        for name in RUN_LOGS:
            (output_dir / name).unlink(missing_ok=True)
    resumable = resume != "never" and (resume != "auto" or has_checkpoint(output_dir))
    held = [name for name in ("metrics.jsonl", f"{SFT_CHECKPOINT}/{SFT_STATE}") if (output_dir / name).exists()]
    if held and not resumable:
        raise ConfigError(
            f"trainer.output_dir: {str(output_dir)!r} already holds a run ({', '.join(held)}) with no checkpoint to resume from "
            f"(trainer.resume={resume}); choose another directory or remove it"
        )
    changes = check_resume(config, output_dir) if resumable else None
    output_dir.mkdir(parents=True, exist_ok=True)
    record_launch(config, output_dir, changes)
    return output_dir


def has_checkpoint(output_dir: Path) -> bool:
    """Whether the directory holds a checkpoint to resume from (an RL one or the SFT stage's)."""
    return (output_dir / "checkpoints" / "latest").exists() or (output_dir / SFT_CHECKPOINT / SFT_STATE).exists()


def started_without_checkpoint(config: RecipeConfig, output_dir: Path) -> bool:
    """Whether `output_dir` holds an earlier launch of this very run (its config.yaml is
    `config`) that wrote no checkpoint: a run killed early, whose logs a restart replaces."""
    saved = output_dir / CONFIG_FILE
    if not saved.exists() or has_checkpoint(output_dir):
        return False
    return yaml.safe_load(saved.read_text(encoding="utf-8")) == to_dict(config)


def latest_checkpoint(output_dir: Path) -> tuple[Path, int] | None:
    """The RL checkpoint `checkpoints/latest` names and its step; None when there is none, or
    the pointer names no checkpoint directory (resuming then says what is wrong with it)."""
    pointer = output_dir / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    match = re.fullmatch(r"step_(\d+)", name)
    path = output_dir / "checkpoints" / name
    return (path, int(match.group(1))) if match and path.is_dir() else None


def check_resume(config: RecipeConfig, output_dir: Path) -> list[Change] | None:
    """The changes of this launch against the previous launch of the run it resumes (all
    allowed; a ConfigError for any other, and for `trainer.total_steps` below the checkpoint's
    step). None when there is no earlier config to compare with."""
    resume = config.trainer.resume
    if resume == "auto":
        run_dir, checkpoint = output_dir, latest_checkpoint(output_dir)
    else:  # an explicit checkpoint: compare with the run it belongs to
        run_dir, match = Path(resume).parent.parent, re.fullmatch(r"step_(\d+)", Path(resume).name)
        checkpoint = (Path(resume), int(match.group(1))) if match else None
    if checkpoint is not None and checkpoint[1] > config.trainer.total_steps:
        raise ConfigError(
            f"trainer.total_steps: {config.trainer.total_steps} is below the step of the checkpoint to resume ({checkpoint[0]}, "
            f"step {checkpoint[1]}); raise it to continue this run, or choose another trainer.output_dir for a new run"
        )
    previous = previous_config(run_dir)
    if previous is None:
        return None
    sft_only = resume == "auto" and not (output_dir / "checkpoints" / "latest").exists()  # the SFT stage's
    return check_changes(Resume(previous, to_dict(config), sft_checkpoint=sft_only), str(output_dir))


def previous_config(run_dir: Path) -> dict | None:
    """The resolved config of the newest launch of the run in `run_dir` (plain data), or None."""
    launches = sorted((run_dir / LAUNCHES_DIR).glob("launch_*.yaml"))
    path = launches[-1] if launches else run_dir / CONFIG_FILE
    if not path.is_file():
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def record_launch(config: RecipeConfig, output_dir: Path, changes: list[Change] | None) -> None:
    """Save this launch's config: `config.yaml` when it starts the run (no checkpoint is
    resumed), and `configs/launch_NNN.yaml` always; print the changes of a resumed launch."""
    launches = output_dir / LAUNCHES_DIR
    if changes is None:  # a new run (or one restarted from scratch): earlier launches are gone
        shutil.rmtree(launches, ignore_errors=True)
    if changes is None or not (output_dir / CONFIG_FILE).exists():  # also a checkpoint resumed into a new directory
        save_resolved(config, output_dir / CONFIG_FILE)
    elif not launches.exists():  # a run started before launches were recorded: its config.yaml was launch 1
        launches.mkdir()
        shutil.copyfile(output_dir / CONFIG_FILE, launches / "launch_001.yaml")
    numbers = [int(path.stem.split("_")[1]) for path in launches.glob("launch_*.yaml")] if launches.exists() else []
    target = launches / f"launch_{max(numbers, default=0) + 1:03d}.yaml"
    save_resolved(config, target)
    if changes is None:
        return
    what = "; ".join(map(str, changes)) or "none"
    target.write_text(f"# resumed; changed since the previous launch: {what}\n" + target.read_text(encoding="utf-8"), encoding="utf-8")
    if changes:
        lines = "".join(f"\n  {change}" for change in changes)
        print(f"resuming with {len(changes)} changed key{'s' if len(changes) > 1 else ''} (saved in {target}):{lines}", flush=True)


def finished_run(config: RecipeConfig, recipe_name: str) -> FinishedRun | None:
    """The run in `trainer.output_dir` when it is finished at this `trainer.total_steps`
    (under `trainer.resume=auto`), else None. A refused change raises as on resume; a finished
    run whose summary a kill cut off gets it back from its metrics."""
    if not config.trainer.output_dir or config.trainer.resume != "auto":
        return None
    output_dir = run_directory(config, recipe_name)
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is None or checkpoint[1] < config.trainer.total_steps:
        return None
    changes = check_resume(config, output_dir) or []
    summary_path = output_dir / "summary.json"
    if not summary_path.exists():
        summary_path.write_text(json.dumps(summary_from_metrics(output_dir, checkpoint[1]), indent=2) + "\n")
    return FinishedRun(output_dir, checkpoint[0], json.loads(summary_path.read_text()), changes)


def summary_from_metrics(output_dir: Path, steps: int) -> dict:
    """`summary.json` of a finished run rebuilt from `metrics.jsonl`: accuracy at step 0 and
    at the last step, and the seconds of all steps."""
    from rlhf.logging.jsonl import METRICS_FILE, read_jsonl

    path = output_dir / METRICS_FILE
    records = [record for record in read_jsonl(path) if record["step"] <= steps] if path.exists() else []
    accuracy = {record["step"]: record["eval/accuracy"] for record in records if "eval/accuracy" in record}
    seconds = sum(record.get("time/step_s", 0.0) for record in records)
    return {"accuracy_before": accuracy.get(0), "accuracy_after": accuracy.get(steps), "steps": steps, "seconds": seconds}
