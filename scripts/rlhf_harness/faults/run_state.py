"""What a killed run left on disk: its checkpoints (loadable? where was a save cut?), its
temporary leftovers and the last step it logged.

Everything here only reads the run directory (see :mod:`rlhf.controller.checkpoint` for the
layout); the driver of :mod:`rlhf_harness.faults.kill_resume` calls it after every kill.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlhf.controller.checkpoint import LATEST, checkpoint_root
from rlhf.logging.jsonl import read_jsonl

WALL_CLOCK_PREFIXES = ("time/", "perf/tokens_per_s", "perf/throughput")
"""Metric keys that depend on wall-clock time: the only ones a resumed run may change."""

Snapshot = dict[str, tuple[int, int]]
"""Entries of a checkpoints directory: name -> (inode, modification time in ns)."""


@dataclass
class CheckpointState:
    """The checkpoints directory of a run right after a kill."""

    resume_step: int | None
    """The step of the checkpoint `latest` names (where `trainer.resume=auto` continues), or None."""
    save_phase: str | None
    """Where the kill cut a checkpoint save of this attempt: 'write' (the temporary directory),
    'pointer' (renamed, `latest` not yet replaced), 'prune' (older ones not yet removed), or None."""
    unreadable: dict[str, str] = field(default_factory=dict)
    """Checkpoint directory -> why it does not load."""
    leftovers: list[str] = field(default_factory=list)
    """Temporary entries (`.tmp-*`, `.*.tmp`) left behind."""


def without_wall_clock(records: list[dict]) -> list[dict]:
    """The records without their wall-clock keys: what a resumed run must reproduce exactly."""
    return [{key: value for key, value in record.items() if not key.startswith(WALL_CLOCK_PREFIXES)} for record in records]


def records_of(path: Path) -> list[dict]:
    """The records of a JSON-lines file, [] when it does not exist (yet, or any more)."""
    try:
        return read_jsonl(path)
    except FileNotFoundError:
        return []


def ends_in_partial_line(path: Path) -> bool:
    """Whether the file ends in a line without its newline (a kill in the middle of a write)."""
    return path.exists() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")


def last_logged_step(run_dir: Path) -> int | None:
    """The highest step in `metrics.jsonl` (None before the first record)."""
    return max((record["step"] for record in records_of(run_dir / "metrics.jsonl")), default=None)


def snapshot(run_dir: Path) -> Snapshot:
    """Identity of every entry of the checkpoints directory, to tell what an attempt changed."""
    root = checkpoint_root(run_dir)
    if not root.is_dir():
        return {}
    result = {}
    for entry in root.iterdir():
        try:
            stat = entry.stat()
        except FileNotFoundError:  # removed between listing and stat (the run is still going)
            continue
        result[entry.name] = (stat.st_ino, stat.st_mtime_ns)
    return result


def step_of(name: str) -> int:
    """The step of a checkpoint directory name (`step_000040` -> 40)."""
    return int(name.removeprefix(".tmp-").removeprefix("step_"))


def pointer_step(run_dir: Path) -> int | None:
    """The step `checkpoints/latest` names, or None."""
    pointer = checkpoint_root(run_dir) / LATEST
    return step_of(pointer.read_text().strip()) if pointer.exists() else None


def checkpoint_problem(directory: Path) -> str | None:
    """Why checkpoint `directory` cannot be restored, or None when every file of it loads
    (`torch.load(weights_only=True)`, as the resume does) and `loop.pt` holds its step."""
    loop_file = directory / "loop.pt"
    if not loop_file.is_file():
        return "no loop.pt"
    for path in sorted(directory.rglob("*.pt")):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as error:
            return f"{path.relative_to(directory)}: {type(error).__name__}: {error}"
        if path == loop_file and state.get("step") != step_of(directory.name):
            return f"loop.pt holds step {state.get('step')}, not {step_of(directory.name)}"
    return None


def inspect_checkpoints(run_dir: Path, before: Snapshot, keep_last: int) -> CheckpointState:
    """The checkpoints of `run_dir` after a kill; `before`: the :func:`snapshot` taken before
    the attempt started (what changed since belongs to the killed attempt)."""
    root = checkpoint_root(run_dir)
    after = snapshot(run_dir)
    changed = {name for name, identity in after.items() if before.get(name) != identity}
    resume_step = pointer_step(run_dir)
    complete = sorted(name for name in after if name.startswith("step_") and (root / name).is_dir())
    state = CheckpointState(resume_step, None)
    state.leftovers = sorted(name for name in after if name.startswith(".tmp-") or name.endswith(".tmp"))
    state.unreadable = {name: problem for name in complete if (problem := checkpoint_problem(root / name))}
    newer = [name for name in complete if resume_step is None or step_of(name) > resume_step]
    if any(name.startswith(".tmp-step_") for name in changed):
        state.save_phase = "write"
    elif f".{LATEST}.tmp" in changed or any(name in changed for name in newer):
        state.save_phase = "pointer"
    elif any(name.startswith(".tmp-removed-") for name in changed) or (LATEST in changed and len(complete) - len(newer) > keep_last):
        state.save_phase = "prune"
    return state


def first_difference(got: list[dict], expected: list[dict]) -> str | None:
    """A one-line description of where two record lists first differ, or None when equal."""
    for index, (mine, theirs) in enumerate(zip(got, expected)):
        if mine != theirs:
            keys = sorted(key for key in set(mine) | set(theirs) if mine.get(key, "<missing>") != theirs.get(key, "<missing>"))
            shown = {key: (mine.get(key, "<missing>"), theirs.get(key, "<missing>")) for key in keys[:5]}
            return f"record {index} (step {theirs.get('step')}): (got, expected) {shown}"
    if len(got) != len(expected):
        return f"{len(got)} records, expected {len(expected)}"
    return None
