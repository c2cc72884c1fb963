"""Errors of worker groups: every message names the role, the rank and what went wrong."""

from __future__ import annotations

from pathlib import Path


class WorkerGroupError(RuntimeError):
    """A worker of a group died, raised, or did not answer in time; the run stops."""


def last_checkpoint(output_dir: str | Path) -> str:
    """The newest checkpoint under `output_dir/checkpoints` (the `latest` pointer), for error
    messages; says so when the run has saved none."""
    pointer = Path(output_dir) / "checkpoints" / "latest"
    if pointer.exists():
        return str(pointer.parent / pointer.read_text().strip())
    return "none saved in this run yet"
