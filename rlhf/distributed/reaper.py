"""A watchdog that removes a local Ray cluster's processes when the run that started it dies.

`ray.shutdown()` (normal exit, an error, Ctrl-C) stops the cluster a run started. A run killed
outright (SIGKILL, the OOM killer) runs no code, and Ray leaves processes behind: its agents
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) outlive the raylet, and workers being started
at that moment may too. So the run starts this watchdog next to the cluster:

    (1) it waits, in a session of its own (a Ctrl-C of the terminal does not reach it), until
        its parent, the run, is gone: then it is re-parented. Meanwhile, twice a second, it
        notes the raylet's pid and the processes the raylet started (agents, workers): once
        the raylet is gone they are orphans nothing links to the cluster any more
    (2) it gives Ray's own shutdown a moment, then finds the cluster's processes: those whose
        command line names the cluster's session directory (GCS, raylet, monitors), those it
        noted (if still the same processes: a pid is only trusted with its start time), and
        those whose environment says `RAY_RAYLET_PID=<raylet pid>` or `RAY_NODE_ID=<node id>`
        (a worker started in the last moments; an agent's renaming of itself may overwrite
        that part of its memory, so the environment alone does not find them all)
    (3) SIGTERM to them, SIGKILL to whatever is left a few seconds later; then it exits

Only a cluster the run itself started gets a watchdog (never one it connected to). Linux only
(`/proc`); elsewhere nothing is started.

    python -m rlhf.distributed.reaper SESSION_DIR NODE_ID
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

POLL_S = 0.5
"""How often the watchdog looks at its parent."""
GRACE_S = 2.0
"""How long Ray's own shutdown gets before the watchdog looks for what is left."""
TERM_S = 3.0
"""How long SIGTERM gets before SIGKILL."""


def start_reaper(session_dir: str, node_id: str) -> subprocess.Popen | None:
    """Start the watchdog of the one-node cluster whose session directory is `session_dir` and
    whose node is `node_id` (a child of this process, in a session of its own); None where
    there is no /proc."""
    if not Path("/proc/self/environ").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "rlhf.distributed.reaper", session_dir, node_id], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def raylet_pids(session_dir: str) -> set[int]:
    """The pids of the cluster's raylets alive now."""
    return {pid for pid in _named(session_dir) if "raylet" in _read(pid, "cmdline").split("\0")[0]}


def started_by(parents: set[int]) -> dict[int, str]:
    """{pid: start time} of the live children of `parents`."""
    children = {}
    for pid in _pids():
        fields = _stat(pid)
        if fields and int(fields[1]) in parents:
            children[pid] = fields[19]
    return children


@dataclass
class Noted:
    """What step (1) noted of the cluster while the run was alive."""

    raylets: set[int] = field(default_factory=set)
    children: dict[int, str] = field(default_factory=dict)
    """{pid: start time} of the processes the raylets started."""

    def look(self, session_dir: str) -> None:
        if not self.raylets:  # a session's raylet keeps its pid: one look that finds it is enough
            self.raylets = raylet_pids(session_dir)
        self.children.update(started_by(self.raylets))


def cluster_processes(session_dir: str, node_id: str, noted: Noted | None = None) -> list[int]:
    """Step (2): the pids of the cluster's processes still alive (this one excluded)."""
    noted = noted or Noted()
    named = _named(session_dir)
    markers = {f"RAY_NODE_ID={node_id}"} | {f"RAY_RAYLET_PID={pid}" for pid in noted.raylets | raylet_pids(session_dir)}
    marked = [pid for pid in _pids() if markers.intersection(_read(pid, "environ").split("\0"))]
    known = [pid for pid, start in noted.children.items() if (_stat(pid) or [None] * 20)[19] == start]
    return sorted(set(named + marked + known) - {os.getpid()})


def reap(session_dir: str, node_id: str, noted: Noted | None = None) -> list[int]:
    """Step (3): stop the cluster's processes; returns those that were found."""
    found = cluster_processes(session_dir, node_id, noted)
    _signal(found, signal.SIGTERM)
    deadline = time.monotonic() + TERM_S
    while time.monotonic() < deadline and cluster_processes(session_dir, node_id, noted):
        time.sleep(0.1)
    _signal(cluster_processes(session_dir, node_id, noted), signal.SIGKILL)
    return found


def main(argv: list[str]) -> int:
    session_dir, node_id, parent, noted = argv[0], argv[1], os.getppid(), Noted()
    while os.getppid() == parent:  # (1)
        noted.look(session_dir)
        time.sleep(POLL_S)
    time.sleep(GRACE_S)  # (2)
    found = reap(session_dir, node_id, noted)
    with open(Path(session_dir) / "logs" / "rlhf_reaper.log", "a") as log:  # beside Ray's own logs of the session
        log.write(f"the run (pid {parent}) ended; raylets {sorted(noted.raylets)}; stopped {len(found)} processes left behind: {found}\n")
    return 0


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _named(session_dir: str) -> list[int]:
    """The pids whose command line names `session_dir`."""
    return [pid for pid in _pids() if session_dir in _read(pid, "cmdline").replace("\0", " ")]


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...; start time at
    index 19), None for a process gone."""
    text = _read(pid, "stat")
    return text.rsplit(")", 1)[1].split() if text else None


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
