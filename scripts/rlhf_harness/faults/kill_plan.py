"""When to kill: a seeded choice of the moment, and the watch that waits for it and SIGKILLs
the whole process group of a training run.

Three kinds of moment:

    startup     a random delay after launch: imports, model build, SFT, loading a checkpoint
    step        a random delay after the record of step `target` appears in metrics.jsonl:
                generation, update, evaluation, logging of the following step
    checkpoint  a random delay after the temporary directory of checkpoint `target` appears:
                the write, the rename, the `latest` pointer, the pruning

Whatever the delay, the kill comes at the latest when the record of step `target + 1` appears
(for 'startup', `target` is the step the launch resumes after): a delay measured on a slower
run must not let this one run on to its end.

A step or checkpoint target lies either before the next checkpoint (the attempt saves nothing
new) or in the interval after it (the run advances one checkpoint), so the kills spread over
the whole run and all of them land before it could finish.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

from rlhf.controller.checkpoint import checkpoint_root

from rlhf_harness.faults.run_state import Snapshot, last_logged_step, pointer_step
from rlhf_harness.procs import session_members

KINDS = {"startup": 0.3, "step": 0.4, "checkpoint": 0.3}
"""Kinds of kill moment and their probabilities."""


@dataclass
class KillPlan:
    """One planned kill."""

    kind: str
    """'startup', 'step' or 'checkpoint' (see the module docstring)."""
    target: int
    """The step whose record ('step') or checkpoint ('checkpoint') triggers it; for 'startup'
    the step the launch resumes after (0: from scratch)."""
    delay_s: float
    """Seconds from the trigger (from launch for 'startup') to the kill."""


@dataclass
class Timings:
    """How long the parts of a run take, measured on the reference run (seconds)."""

    startup_s: float
    """Launch to the first record of metrics.jsonl."""
    step_s: float
    """One RL step (median)."""
    save_s: float
    """A checkpoint's temporary directory is visible this long (median)."""


def next_checkpoint(step: int, save_every: int, total_steps: int) -> int:
    """The first step after `step` that writes a checkpoint."""
    return min((step // save_every + 1) * save_every, total_steps)


def choose_kill(rng: random.Random, resume_step: int, kills_left: int, total_steps: int, save_every: int, timings: Timings) -> KillPlan:
    """The next kill of a run that resumes after `resume_step` (0: from scratch).

    The attempt advances past its next checkpoint with probability (checkpoints left before
    the last step) / (kills left), so the kills spread over the run. Only the last kill may aim
    at the final checkpoint: one that lands just after it would leave nothing to resume.
    """
    upcoming = next_checkpoint(resume_step, save_every, total_steps)
    later = len(range(next_checkpoint(upcoming, save_every, total_steps), total_steps, save_every))
    base = upcoming if upcoming < total_steps and rng.random() < min(1.0, later / kills_left) else resume_step
    checkpoint = next_checkpoint(base, save_every, total_steps)
    last_step = min(checkpoint, total_steps - 1)
    kinds = dict(KINDS)
    if base > resume_step:  # a kill during startup would not advance
        del kinds["startup"]
    if checkpoint == total_steps and kills_left > 1:
        del kinds["checkpoint"]
    if last_step <= base:
        del kinds["step"]
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    if kind == "step":
        return KillPlan("step", rng.randint(base + 1, last_step), rng.uniform(0.0, timings.step_s))
    if kind == "startup":
        return KillPlan("startup", resume_step, rng.uniform(0.0, timings.startup_s))
    return KillPlan("checkpoint", checkpoint, rng.uniform(0.0, 1.5 * timings.save_s))


def triggered(plan: KillPlan, run_dir: Path, metrics_before: tuple[int, int] | None, before: Snapshot) -> bool:
    """Whether the moment `plan` waits for has come (the delay still to run).

    `metrics_before` and `before`: identities of metrics.jsonl and of the checkpoints from
    before the launch. A resuming run first cuts metrics.jsonl back (a new file), so records
    count only once the file is not the one from before."""
    if plan.kind == "startup":
        return True
    logged = logged_by_this_launch(run_dir, metrics_before)
    if logged is None or logged < plan.target:
        return False
    if plan.kind == "step":
        return True
    temporary = f".tmp-step_{plan.target:06d}"
    path = checkpoint_root(run_dir) / temporary
    # a save quicker than one poll was missed: kill right after it instead
    return (path.exists() and file_identity(path) != before.get(temporary)) or (pointer_step(run_dir) or 0) >= plan.target


def logged_by_this_launch(run_dir: Path, metrics_before: tuple[int, int] | None) -> int | None:
    """The last step in metrics.jsonl once this launch has written or cut it back, else None."""
    if file_identity(run_dir / "metrics.jsonl") in (None, metrics_before):
        return None
    return last_logged_step(run_dir)


def file_identity(path: Path) -> tuple[int, int] | None:
    """(inode, modification time in ns) of `path`, or None when it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def watch_and_kill(
    process: Popen, plan: KillPlan, run_dir: Path, before: Snapshot, metrics_before: tuple[int, int] | None, poll_s: float, timeout_s: float,
    kill=None,
) -> float | None:
    """Wait for the moment of `plan` (at the latest the record of step `plan.target + 1`), then
    `kill` it (default :func:`kill_group`: SIGKILL the process group of `process`, started with
    `start_new_session=True`). Returns the seconds from launch to the kill, or None when the
    process ended by itself first (or ran past `timeout_s`: then its group is killed)."""
    kill = kill or kill_group
    start = time.monotonic()
    fired_at = start if plan.kind == "startup" else None
    while process.poll() is None:
        now = time.monotonic()
        if now - start > timeout_s:
            kill_group(process)
            return None
        if fired_at is None and triggered(plan, run_dir, metrics_before, before):
            fired_at = now
        logged = logged_by_this_launch(run_dir, metrics_before)
        overtaken = logged is not None and logged > plan.target
        if overtaken or (fired_at is not None and now - fired_at >= plan.delay_s):
            kill(process)
            return now - start
        time.sleep(poll_s)
    return None


def kill_group(process: Popen) -> None:
    """SIGKILL every process of the group `process` leads, and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def kill_leader(process: Popen) -> None:
    """SIGKILL `process` alone (as the kernel's OOM killer would), and reap it: what it started
    must end by itself."""
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def survivors(session: int) -> list[int]:
    """Live (not zombie) processes still in the session of a launch (its pid: every launch
    starts a session of its own)."""
    return [stat.pid for stat in session_members(session)]
