"""Run a training command as a subprocess and sample it from outside: its memory, open file
descriptors and child processes, keyed by the last step in its `metrics.jsonl`; after it exits,
find any process it left behind.

    (1) start the command in a session of its own (`start_new_session`), so that its process
        group receives a Ctrl-C as a terminal would send it, and so that what it leaves behind
        can be found by session id
    (2) every `interval_s`: the newest step logged, RSS / peak RSS / fds of the main process,
        RSS of the whole tree, the live descendants (remembered, with their peak RSS)
    (3) optionally, once the run logged step `interrupt_at_step`: SIGINT to its process group
    (4) after it exits: wait up to `linger_s` for its session and every descendant ever seen to
        end; report those still alive and kill them (so the watcher leaves nothing either)

Sampling from outside leaves the run untouched (no hook in the loop) and works for any
command, also one stopped by a signal. Linux only (/proc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_harness.procs import (
    ProcessId,
    all_stats,
    descendants,
    describe,
    fd_count,
    memory_status,
    open_files,
    session_members,
    still_alive,
)


class StepReader:
    """The newest `step` of a growing JSON-lines file, reading only what was appended."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.step: int | None = None

    def latest(self) -> int | None:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:  # not written yet (the SFT warm start runs first)
            return self.step
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next read
        self.offset += len(complete)
        for line in complete.splitlines():
            if line.strip():
                self.step = json.loads(line).get("step", self.step)
        return self.step


@dataclass
class Watch:
    """Everything sampled from one run."""

    returncode: int
    seconds: float
    samples: list[dict] = field(default_factory=list)
    """One per interval: t, step, rss, hwm, fds (main process), tree_rss, children (count); and
    `files`, what the descriptors point to, where their number changed since the last sample."""
    process_peaks: dict[int, dict] = field(default_factory=dict)
    """pid -> {"name", "hwm"}: the largest VmHWM seen of every process of the tree."""
    children_seen: int = 0
    """Descendants seen over the whole run."""
    left_behind: list[str] = field(default_factory=list)
    """Processes of the run still alive `linger_s` after it exited (then killed)."""
    interrupted_at: int | None = None
    """The step after which SIGINT was sent, if it was."""
    timed_out: bool = False


def sample_tree(pid: int, seen: set[ProcessId], peaks: dict[int, dict]) -> dict | None:
    """Step 2 of the module docstring for one instant; None once the main process is gone."""
    main = memory_status(pid)
    fds = fd_count(pid)
    if main is None or fds is None:
        return None
    tree_rss = main["rss"]
    peak = peaks.setdefault(pid, {"name": "main", "hwm": 0})
    peak["hwm"] = max(peak["hwm"], main["hwm"])
    children = descendants(pid)
    for child in children:
        seen.add(child.id)
        memory = memory_status(child.pid)
        if memory is None:
            continue
        tree_rss += memory["rss"]
        peak = peaks.setdefault(child.pid, {"name": child.name, "hwm": 0})
        peak["hwm"] = max(peak["hwm"], memory["hwm"])
    return {"rss": main["rss"], "hwm": main["hwm"], "fds": fds, "tree_rss": tree_rss, "children": len(children)}


def watch_run(command: list[str], metrics_path: Path, log_path: Path, *, interval_s: float = 0.5,
              interrupt_at_step: int | None = None, timeout_s: float | None = None, linger_s: float = 15.0,
              env: dict | None = None) -> Watch:
    """Steps 1-4 of the module docstring: run `command` (stdout and stderr to `log_path`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    # 1. a session of its own
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    watch, seen = Watch(returncode=0, seconds=0.0), set()
    reader = StepReader(metrics_path)
    try:
        # 2-3. sample until it exits
        while process.poll() is None:
            step = reader.latest()
            sample = sample_tree(process.pid, seen, watch.process_peaks)
            if sample is not None:
                if not watch.samples or sample["fds"] != watch.samples[-1]["fds"]:
                    sample["files"] = open_files(process.pid)  # what the descriptors are, when their number changes
                watch.samples.append({"t": time.monotonic() - start, "step": step, **sample})
            if interrupt_at_step is not None and watch.interrupted_at is None and step is not None and step >= interrupt_at_step:
                os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
                watch.interrupted_at = step
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                watch.timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
            time.sleep(interval_s)
    except KeyboardInterrupt:  # the watcher's own Ctrl-C: the run (another session) gets it too
        os.killpg(process.pid, signal.SIGINT)
        process.wait()
        raise
    finally:
        watch.returncode = process.wait()
        watch.seconds = time.monotonic() - start
        # 4. what outlives it
        watch.children_seen = len(seen)
        watch.left_behind = reap_leftovers(process.pid, seen, linger_s)
    return watch


def reap_leftovers(session: int, seen: set[ProcessId], linger_s: float) -> list[str]:
    """Step 4: processes of `session` or among `seen` still alive after `linger_s` (a clean
    exit may take a moment: atexit handlers stop workers); kills and describes them."""
    deadline = time.monotonic() + linger_s
    while True:
        stats = all_stats()
        alive = {stat.id: stat for stat in [*session_members(session, stats), *still_alive(seen)]}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    left = [describe(stat) for stat in alive.values()]
    for stat in alive.values():
        try:
            os.kill(stat.pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 5.0  # SIGKILL takes effect asynchronously
    while still_alive(list(alive)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def training_env() -> dict[str, str]:
    """The environment of a watched run: offline hub, no Ray auth prompt, no tokenizer fork
    warnings (the caller's own settings win)."""
    return {"HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false", **os.environ}
