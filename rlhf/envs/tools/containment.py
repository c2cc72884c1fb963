"""What this machine's kernel lets the `python` sandbox use, detected once per process.

- `namespaces_available()`: whether a child may unshare new network and PID namespaces (root
  may; other users need unprivileged user namespaces, which some distributions turn off).
- `pids_cgroup_root()`: a writable cgroup-v1 `pids` hierarchy, used only when running as root,
  because RLIMIT_NPROC does not apply to root. Under cgroup v2 alone (and for non-root users)
  the sandbox falls back to RLIMIT_NPROC, which works for every user but root.

`Cgroup` makes one sandbox's pids cgroup (a hard cap on its tasks), kills everything in it, and
removes it.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
import uuid

PIDS_V1_ROOT = "/sys/fs/cgroup/pids"

_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
flags = 0x40000000 | 0x20000000 | (0x10000000 if os.geteuid() else 0)
raise SystemExit(0 if libc.unshare(flags) == 0 else 1)
"""


@functools.lru_cache(maxsize=1)
def namespaces_available() -> bool:
    """Whether a child process can unshare network and PID namespaces here (probed once)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        probe = subprocess.run([sys.executable, "-I", "-c", _PROBE], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@functools.lru_cache(maxsize=1)
def pids_cgroup_root() -> str | None:
    """The cgroup-v1 pids hierarchy when running as root and it is writable, else None."""
    if os.geteuid() != 0 or not os.path.isfile(os.path.join(PIDS_V1_ROOT, "cgroup.procs")):
        return None
    return PIDS_V1_ROOT if os.access(PIDS_V1_ROOT, os.W_OK) else None


class Cgroup:
    """One sandbox's pids cgroup: at most `max_tasks` tasks (processes and threads) in it."""

    def __init__(self, root: str, max_tasks: int):
        self.path = os.path.join(root, f"rlhf-sandbox-{os.getpid()}-{uuid.uuid4().hex[:12]}")
        os.mkdir(self.path)
        with open(os.path.join(self.path, "pids.max"), "w") as limit:
            limit.write(str(max_tasks))

    def _members(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as procs:
                return [int(line) for line in procs if line.strip()]
        except OSError:
            return []

    def kill_all(self, patience_s: float = 5.0) -> None:
        """SIGKILL every process in the cgroup until it is empty (or `patience_s` passed)."""
        deadline = time.monotonic() + patience_s
        while (members := self._members()) and time.monotonic() < deadline:
            for pid in members:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (a cgroup with members cannot be removed)."""
        self.kill_all()
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # members not yet reaped by the kernel
                time.sleep(0.01)
