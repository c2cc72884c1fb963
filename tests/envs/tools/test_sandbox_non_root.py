"""The python tool's sandbox as an unprivileged user: the paths root never takes.

As root the sandbox caps processes with a pids cgroup and unshares network and PID namespaces
directly; as any other user it caps them with RLIMIT_NPROC and needs a user namespace first
(see rlhf/envs/tools/sandbox_boot.py). The other sandbox tests run as whoever runs pytest,
which on this project's machines and CI is root, so here a root test suite runs the
containment checks again as the `nobody` user, in a separate interpreter.

A user namespace that maps root to another uid would not do: its processes stay root to the
kernel's process accounting, which ignores RLIMIT_NPROC for root, so a fork bomb there is not
capped although it would be for a real user.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox_helpers import FORK_BOMB, sandbox_processes

REPO = Path(__file__).resolve().parents[3]

DRIVER = r"""
import json, os, sys
from rlhf.envs.tools.containment import namespaces_available, pids_cgroup_root
from rlhf.envs.tools.sandbox import SandboxLimits, run_python

FORK_BOMB = sys.argv[1]
NETWORK = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nprint('connected')"
runs = {
    "normal": run_python("import os\nprint(6 * 7)\nprint(os.getcwd())"),
    "fork_bomb": run_python(FORK_BOMB, SandboxLimits(timeout_s=2.0, cpu_s=2, max_processes=8, allow_processes=True)),
    "network": run_python(NETWORK, SandboxLimits(timeout_s=3.0)),
    "write_outside": run_python("open('/tmp/rlhf-sandbox-non-root-escape.txt', 'w')"),
    "infinite_loop": run_python("while True: pass", SandboxLimits(timeout_s=1.0, cpu_s=5)),
}
print(json.dumps({
    "euid": os.geteuid(), "namespaces": namespaces_available(), "pids_cgroup": pids_cgroup_root(),
    "runs": {name: {"stdout": r.stdout, "stderr": r.stderr[-400:], "exit_code": r.exit_code, "killed": r.killed}
             for name, r in runs.items()},
}))
"""


def _run_as(user: pwd.struct_passwd, command: list[str], timeout: float) -> subprocess.CompletedProcess:
    """`command` as `user` (no supplementary groups), importing from this checkout."""
    return subprocess.run(command, user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/", capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": "/tmp"}, timeout=timeout)


def _unprivileged_interpreter(user: pwd.struct_passwd) -> str | None:
    """An interpreter `user` can run that imports this checkout's sandbox module, or None."""
    for python in (sys.executable, "/usr/bin/python3"):
        try:
            probe = _run_as(user, [python, "-c", "import rlhf.envs.tools.sandbox"], timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return python
    return None


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.fixture(scope="module")
def report() -> dict:
    if os.geteuid() != 0:
        pytest.skip("not root: the other sandbox tests already run as an unprivileged user")
    user = _nobody()
    if user is None:
        pytest.skip("no 'nobody' user on this machine")
    python = _unprivileged_interpreter(user)
    if python is None:
        pytest.skip("'nobody' can run no interpreter that reads this checkout (a checkout under /root, say)")
    done = _run_as(user, [python, "-c", DRIVER, FORK_BOMB], timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_driver_really_ran_unprivileged(report):
    assert report["euid"] == pwd.getpwnam("nobody").pw_uid != 0
    assert report["pids_cgroup"] is None  # the cgroup is root's path; RLIMIT_NPROC caps this user
    normal = report["runs"]["normal"]
    answer, workdir = normal["stdout"].splitlines()
    assert (answer, normal["exit_code"]) == ("42", 0) and not os.path.exists(workdir)


def test_a_fork_bomb_is_capped_by_rlimit_nproc(report):
    bomb = report["runs"]["fork_bomb"]
    assert bomb["killed"] == "timeout"
    assert 0 < int(bomb["stdout"].split()[1]) < 8


def test_the_network_is_unreachable(report):
    network = report["runs"]["network"]
    assert "connected" not in network["stdout"]
    expected = "Network is unreachable" if report["namespaces"] else "sandbox: network access is not allowed"
    assert expected in network["stderr"]


def test_files_outside_stay_untouched_and_loops_are_killed(report):
    assert "PermissionError: sandbox: writing" in report["runs"]["write_outside"]["stderr"]
    assert not os.path.exists("/tmp/rlhf-sandbox-non-root-escape.txt")
    assert report["runs"]["infinite_loop"]["killed"] == "timeout"


def test_nothing_is_left_running(report):
    assert sandbox_processes() == []
