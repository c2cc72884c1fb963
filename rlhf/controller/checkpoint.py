"""Checkpoints of an RL run: everything needed to continue exactly where it stopped.

Layout under `<output_dir>/checkpoints/`:

    step_000040/          one checkpoint (complete, or absent: never half-written)
        actor/ critic/    each engine's own checkpoint (weights, optimiser, LR schedule)
        ref.pt            the reference weights (the dynamic anchor moves them)
        process_*.pt      random-number state and shuffling generators of each process
        loop.pt           the step, the controller's random state, and the state_dict() of
                          every stateful part of the loop (rollout source, KL controller,
                          non-finite guard, sync checker) under its name
    latest                the name of the newest complete checkpoint, replaced last

A checkpoint is written into a temporary directory, every file is fsynced, the directory is
renamed into place and only then `latest` is replaced (write, fsync, rename): a kill at any
moment leaves the previous checkpoint and pointer intact. Before the rename, every process's
part must be there (on a cluster each rank writes its own files into the run directory, so a
rank writing to a disk of its own node would leave a hole): a checkpoint with a part missing
is never marked complete. The oldest checkpoints beyond
`trainer.keep_last` are removed after the pointer moved, each renamed to `.tmp-removed-*`
first; the next save deletes whatever `.tmp-*` a kill left (scripts/kill_resume.py checks all
this by killing runs).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.controller.setup import Run
from rlhf.logging.jsonl import read_jsonl
from rlhf.workers.state import rng_state, set_rng_state

LATEST = "latest"


def checkpoint_root(output_dir: Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(run: Run, roles, loop_state: dict, step: int) -> Path:
    """Write checkpoint `step` atomically and point `latest` at it; returns its directory."""
    root = checkpoint_root(run.output_dir)
    name = f"step_{step:06d}"
    temporary = root / f".tmp-{name}"
    for leftover in root.glob(".tmp-*"):  # of a save or removal that a kill cut short
        shutil.rmtree(leftover, ignore_errors=True)
    temporary.mkdir(parents=True)
    roles.save_state(temporary)
    check_parts(temporary, roles.checkpoint_parts(), name)
    torch.save({**loop_state, "step": step, "rng": rng_state()}, temporary / "loop.pt")
    _fsync_tree(temporary)
    final = root / name
    _remove(final)  # left by a run that got this far before a kill, or one resumed from an earlier step
    os.replace(temporary, final)
    _write_atomically(root / LATEST, name)
    prune_checkpoints(root, run.config.trainer.keep_last, name)
    return final


class IncompleteCheckpoint(RuntimeError):
    """A process's part of a checkpoint is not where the controller looks for it."""


def check_parts(directory: Path, parts: list[str], name: str) -> None:
    """Raise IncompleteCheckpoint when a part every complete checkpoint holds is missing."""
    missing = [part for part in parts if not (directory / part).exists()]
    if missing:
        raise IncompleteCheckpoint(
            f"checkpoint {name} is incomplete: {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} missing from {directory}; "
            "the processes that wrote them cannot write into the run directory the controller sees. trainer.output_dir must be "
            "on a filesystem every node shares, under the same path; the previous checkpoint stays the latest"
        )


def resume_point(run: Run) -> Path | None:
    """The checkpoint `trainer.resume` names: the newest one of this run directory ('auto'),
    none ('never'), or an explicit directory."""
    resume = run.config.trainer.resume
    if resume == "never":
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / "loop.pt").exists():
            raise ConfigError(f"trainer.resume: {resume!r} is not a checkpoint directory (no loop.pt in it)")
        return path
    pointer = checkpoint_root(run.output_dir) / LATEST
    if not pointer.exists():
        return None
    name = pointer.read_text().strip()
    if not name or not (pointer.parent / name / "loop.pt").exists():
        raise ConfigError(
            f"trainer.resume: {str(pointer)} names {name!r}, which is no checkpoint in {str(pointer.parent)!r}; pass one "
            "with trainer.resume=PATH, or start afresh with trainer.resume=never (or another trainer.output_dir)"
        )
    return pointer.parent / name


def load_checkpoint(roles, path: Path, parts: list[str]) -> dict:
    """Restore the roles from checkpoint `path`; returns its loop state (with `step` and an
    entry for each name in `parts`)."""
    try:
        state = torch.load(path / "loop.pt", weights_only=True)
        missing = [part for part in ("step", *parts) if part not in state]
        if missing:
            raise RuntimeError(f"its loop state has no {', '.join(missing)} (written by another version of rlhf, or another recipe)")
        roles.load_state(path)
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as error:
        # a tampered file fails weights-only loading: say which global it names, not the manual
        reason = next((line.strip() for line in str(error).splitlines() if "Unsupported global" in line), str(error).split("\n")[0])
        raise RuntimeError(f"checkpoint {path} cannot be restored ({type(error).__name__}: {reason}); "
                           "pass an earlier one with trainer.resume=PATH or start afresh with trainer.resume=never") from None
    set_rng_state(state["rng"])
    return state


def truncate_metrics(path: Path, last_step: int) -> list[dict]:
    """Drop the records of steps after `last_step` (logged after the checkpoint was written)
    from the metrics file, atomically; returns the records kept."""
    records = [record for record in read_jsonl(path) if record["step"] <= last_step] if path.exists() else []
    _write_atomically(path, "".join(json.dumps(record) + "\n" for record in records))
    return records


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), reverse=True):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        else:
            _fsync_directory(path)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def prune_checkpoints(root: Path, keep_last: int, newest: str) -> None:
    """Remove the checkpoints older than the `keep_last` newest up to `newest` (the one
    `latest` names). Newer ones, left by an attempt that a kill cut short after its rename,
    stay until the run overwrites them: counting them could remove `newest` itself."""
    checkpoints = sorted(path for path in root.glob("step_*") if path.is_dir() and path.name <= newest)
    for old in checkpoints[: max(0, len(checkpoints) - keep_last)]:
        _remove(old)


def _remove(directory: Path) -> None:
    """Delete `directory` so that a kill never leaves half of it under its own name: renamed
    to a `.tmp-` name first (the next save deletes what remains of it)."""
    if not directory.exists():
        return
    doomed = directory.with_name(f".tmp-removed-{directory.name}")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(directory, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
