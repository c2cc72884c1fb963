"""A watchdog that removes a local Ray cluster's processes when the run that started it dies.

`ray.shutdown()` (normal exit, an error, Ctrl-C) stops the cluster a run started. A run killed
outright (SIGKILL, the OOM killer) runs no code, and Ray leaves processes behind: its agents
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) outlive the raylet, and workers being started
at that moment may too. So the run starts this watchdog next to the cluster:

    (1) it waits, in a session of its own (a Ctrl-C of the terminal does not reach it), until
        its parent, the run, is gone: then it is re-parented
    (2) it gives Ray's own shutdown a moment, then finds the cluster's processes: those whose
        command line names the cluster's session directory (GCS, raylet, monitors) and those
        the raylet started, which carry `RAY_RAYLET_PID=<raylet pid>` in their environment
        (agents and workers rename themselves, so their command lines say nothing)
    (3) SIGTERM to them, SIGKILL to whatever is left a few seconds later; then it exits

Only a cluster the run itself started gets a watchdog (never one it connected to). Linux only
(`/proc`); elsewhere nothing is started.

    python -m rlhf.distributed.reaper SESSION_DIR
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.5
"""How often the watchdog looks at its parent."""
GRACE_S = 2.0
"""How long Ray's own shutdown gets before the watchdog looks for what is left."""
TERM_S = 3.0
"""How long SIGTERM gets before SIGKILL."""


def start_reaper(session_dir: str) -> subprocess.Popen | None:
    """Start the watchdog of the cluster whose session directory is `session_dir` (a child of
    this process, in a session of its own); None where there is no /proc."""
    if not Path("/proc/self/environ").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "rlhf.distributed.reaper", session_dir], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def cluster_processes(session_dir: str) -> list[int]:
    """Step (2): the pids of the cluster's processes still alive (this one excluded)."""
    named = [pid for pid in _pids() if session_dir in _read(pid, "cmdline").replace("\0", " ")]
    raylets = [pid for pid in named if "raylet" in _read(pid, "cmdline").split("\0")[0]]
    markers = [f"RAY_RAYLET_PID={pid}" for pid in raylets]
    started = [pid for pid in _pids() if markers and any(marker in _read(pid, "environ").split("\0") for marker in markers)]
    return sorted(set(named + started) - {os.getpid()})


def reap(session_dir: str) -> list[int]:
    """Step (3): stop the cluster's processes; returns those that were found."""
    found = cluster_processes(session_dir)
    _signal(found, signal.SIGTERM)
    deadline = time.monotonic() + TERM_S
    while time.monotonic() < deadline and cluster_processes(session_dir):
        time.sleep(0.1)
    _signal(cluster_processes(session_dir), signal.SIGKILL)
    return found


def main(argv: list[str]) -> int:
    session_dir, parent = argv[0], os.getppid()
    while os.getppid() == parent:  # (1)
        time.sleep(POLL_S)
    time.sleep(GRACE_S)  # (2)
    reap(session_dir)
    return 0


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _read(pid: int, name: str) -> str:
    """/proc/PID/NAME as text ('' for a process gone or not ours)."""
    try:
        return (Path("/proc") / str(pid) / name).read_bytes().decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
