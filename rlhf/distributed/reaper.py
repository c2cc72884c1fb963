"""A watchdog that removes a local Ray cluster's processes when the run that started it dies.

`ray.shutdown()` (normal exit, an error, Ctrl-C) stops the cluster a run started. A run killed
outright (SIGKILL, the OOM killer) runs no code, and Ray leaves processes behind: its agents
(`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) outlive the raylet, and workers being started
at that moment may too. So the run starts this watchdog just before `ray.init`:

    (1) it waits, in a session of its own (a Ctrl-C of the terminal does not reach it), until
        its parent, the run, is gone: then it is re-parented. Meanwhile it notes the Ray
        processes the run starts (GCS, raylet, monitors: its children running Ray's code),
        the processes each raylet starts (agents, workers) and the session directories their
        command lines name; each pid with its start time. Once the raylet is gone its
        children are orphans that nothing else links to the cluster
    (2) it gives Ray's own shutdown a moment, then takes what is left: the processes it noted,
        if still the same (a pid is only trusted with its start time); those whose command
        line names a session directory it saw; those whose environment says
        `RAY_RAYLET_PID=<a raylet it saw>` (a worker started in the last moment; an agent's
        renaming of itself may overwrite that part of its memory, so the environment alone
        does not find them all)
    (3) SIGTERM to them, SIGKILL to whatever is left a few seconds later; it notes what it
        stopped in the session's `logs/rlhf_reaper.log`, and exits

Started before `ray.init`, it also covers a run killed while Ray is still starting. Only a
cluster the run itself starts gets a watchdog (never one it connects to). Linux only (`/proc`);
elsewhere nothing is started.

    python -m rlhf.distributed.reaper RAY_PACKAGE_DIR
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

STARTUP_POLL_S, STARTUP_S, POLL_S = 0.25, 60.0, 2.0
"""Step (1) looks every 0.25 s for the first minute (Ray starts its processes then), then every
2 s (a worker started later is found by its environment)."""
GRACE_S = 2.0
"""How long Ray's own shutdown gets before the watchdog looks for what is left."""
TERM_S = 3.0
"""How long SIGTERM gets before SIGKILL."""
SESSION = re.compile(r"/[^\s=:,]*/session_[0-9][0-9_-]+")
"""A Ray session directory in a command line (`--log_dir=/tmp/ray/session_2026-..._123/logs`)."""


def start_reaper(ray_dir: str) -> subprocess.Popen | None:
    """Start the watchdog of the Ray cluster this process is about to start (`ray_dir`: the
    directory of the `ray` package, which the cluster's processes run); a child of this
    process in a session of its own; None where there is no /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    return subprocess.Popen([sys.executable, "-m", "rlhf.distributed.reaper", ray_dir], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


@dataclass
class Noted:
    """What step (1) noted of the cluster while the run was alive."""

    ray_dir: str
    processes: dict[int, str] = field(default_factory=dict)
    """{pid: start time} of the run's Ray processes and of the processes their raylets started."""
    raylets: set[int] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)

    def look(self, run: int) -> None:
        """Note the Ray children of `run` and the children of the raylets among them."""
        for pid in _pids():
            fields = _stat(pid)
            if not fields:
                continue
            parent = int(fields[1])
            if parent == run and self.ray_dir in (command := _read(pid, "cmdline")):
                self.processes[pid] = fields[19]
                if "raylet" in command.split("\0")[0]:
                    self.raylets.add(pid)
                self.sessions.update(SESSION.findall(command.replace("\0", " ")))
            elif parent in self.raylets:
                self.processes[pid] = fields[19]

    def left(self) -> list[int]:
        """Step (2): the pids of the cluster's processes still alive (this one excluded)."""
        known = [pid for pid, start in self.processes.items() if (_stat(pid) or [None] * 20)[19] == start]
        named = [pid for pid in _pids() if self.sessions and any(s in _read(pid, "cmdline").replace("\0", " ") for s in self.sessions)]
        markers = {f"RAY_RAYLET_PID={pid}" for pid in self.raylets}
        marked = [pid for pid in _pids() if markers and markers.intersection(_read(pid, "environ").split("\0"))]
        return sorted(set(known + named + marked) - {os.getpid()})


def reap(noted: Noted) -> list[int]:
    """Step (3): stop the cluster's processes; returns those that were found."""
    found = noted.left()
    _signal(found, signal.SIGTERM)
    deadline = time.monotonic() + TERM_S
    while time.monotonic() < deadline and noted.left():
        time.sleep(0.1)
    _signal(noted.left(), signal.SIGKILL)
    return found


def main(argv: list[str]) -> int:
    parent, noted, started = os.getppid(), Noted(argv[0]), time.monotonic()
    while os.getppid() == parent:  # (1)
        noted.look(parent)
        time.sleep(STARTUP_POLL_S if time.monotonic() - started < STARTUP_S else POLL_S)
    time.sleep(GRACE_S)  # (2)
    found = reap(noted)
    for session in sorted(noted.sessions)[:1]:
        with open(Path(session) / "logs" / "rlhf_reaper.log", "a") as log:  # beside Ray's own logs of the session
            log.write(f"the run (pid {parent}) ended; raylets {sorted(noted.raylets)}; stopped {len(found)} processes left behind: {found}\n")
    return 0


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


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
