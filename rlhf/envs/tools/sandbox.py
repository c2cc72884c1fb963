"""The `python` tool: untrusted code run in a contained subprocess.

`run_python(code, limits)` never raises for anything the code does: a crash, a timeout or a
limit comes back in the `SandboxResult`, and `format_observation` turns that into the text the
agent sees. Each run gets:

- a fresh temporary directory as its working directory, HOME and TMPDIR, removed afterwards;
- `python -I` (no PYTHON* variables, no user site, no script directory on sys.path) and an
  environment of only PATH, HOME, TMPDIR and LC_ALL;
- per-process limits (:mod:`rlhf.envs.tools.sandbox_boot`): CPU seconds, address space, file
  size, 64 open files, no core dumps;
- a cap on its processes: a pids cgroup (as root, where cgroup v1 is writable) or RLIMIT_NPROC
  (any other user); with neither only the audit hook's refusal to start processes remains;
- no network: new network namespace (kernel guarantee) where the kernel allows it, else the
  audit hook refuses socket operations (a tripwire, not a guarantee);
- a wall-clock timeout, after which everything the code started is killed: the PID namespace's
  processes die with it, its own session's process group is killed, and so is every process in
  its cgroup;
- stdout and stderr read as they come and capped at `max_output_bytes` each; going over the
  cap kills the run ("output limit"), so a flood costs nothing.

What is NOT contained when only the audit hook stands guard (see the bootstrap): a determined
attacker who finds a way around PEP 578 hooks keeps the file-system rights of this process's
user (root here) outside the temporary directory. Use a container or VM for hostile code.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from rlhf.envs.tools.containment import Cgroup, namespaces_available, pids_cgroup_root

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_boot.py")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one run of the `python` tool."""

    timeout_s: float = 5.0
    """Wall-clock seconds before the run is killed."""
    cpu_s: int = 2
    """CPU seconds per process (RLIMIT_CPU)."""
    memory_mb: int = 512
    """Address space per process, MiB (RLIMIT_AS)."""
    max_file_mb: int = 8
    """Largest file the code may write, MiB (RLIMIT_FSIZE)."""
    max_processes: int = 16
    """Most processes and threads at once (pids cgroup or RLIMIT_NPROC)."""
    max_output_bytes: int = 8192
    """Most bytes kept of stdout and of stderr; more kills the run."""
    allow_processes: bool = False
    """Let the code start processes (fork, subprocess); still capped by max_processes."""


@dataclass
class SandboxResult:
    """What one run did."""

    stdout: str
    """Standard output (UTF-8, undecodable bytes replaced), at most max_output_bytes."""
    stderr: str
    """Standard error, likewise."""
    exit_code: int | None
    """Exit status; -N when killed by signal N; None if it could not be started."""
    timed_out: bool = False
    """The wall-clock timeout killed it."""
    killed: str | None = None
    """Why the sandbox ended it ('timeout', 'output limit', 'cpu limit'), or None."""
    truncated: bool = False
    """Output went over max_output_bytes (and the rest was dropped)."""


def _settings(limits: SandboxLimits, cgroup: Cgroup | None, namespaces: bool) -> str:
    return json.dumps(
        {
            "cpu_s": limits.cpu_s,
            "memory_mb": limits.memory_mb,
            "max_file_mb": limits.max_file_mb,
            "max_processes": limits.max_processes,
            "allow_processes": limits.allow_processes,
            "cgroup": cgroup.path if cgroup else None,
            "namespaces": namespaces,
        }
    )


def _read_capped(process: subprocess.Popen, limits: SandboxLimits) -> tuple[bytes, bytes, str | None]:
    """Read stdout and stderr until both close, the timeout, or the output cap.

    Returns (stdout, stderr, reason): reason is 'timeout' or 'output limit' when reading
    stopped early (the process is still running then), else None.
    """
    deadline = time.monotonic() + limits.timeout_s
    buffers = {process.stdout: bytearray(), process.stderr: bytearray()}
    with selectors.DefaultSelector() as selector:
        for stream in buffers:
            selector.register(stream, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), "timeout"
            for key, _ in selector.select(timeout=remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fileobj]
                buffer += chunk
                if len(buffer) > limits.max_output_bytes:
                    return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), "output limit"
    return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), None


def _kill_everything(process: subprocess.Popen, cgroup: Cgroup | None) -> None:
    """SIGKILL the run's session (and cgroup); with PID namespaces that takes every descendant."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill_all()


def _remove_tree(path: str) -> None:
    """Remove the working directory, even where the code took away its own permissions."""

    def make_writable_and_retry(function, failed_path, _error) -> None:
        try:
            os.chmod(os.path.dirname(failed_path), 0o700)
            os.chmod(failed_path, 0o700)
            function(failed_path)
        except OSError:
            pass

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _decode(data: bytes, limit: int) -> str:
    return data[:limit].decode("utf-8", errors="replace")


def _kill_reason(exit_code: int, reason: str | None) -> str | None:
    if reason is not None:
        return reason
    if exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
        return "cpu limit"
    return None


def run_python(
    code: str, limits: SandboxLimits | None = None, namespaces: bool | None = None
) -> SandboxResult:
    """Run `code` in the sandbox described in the module docstring; never raises for the code.

    `namespaces` False runs without network and PID namespaces even where the kernel has them
    (None: use them when available). Raises only for failures of this machine (e.g. no
    temporary directory can be made).
    """
    limits = limits or SandboxLimits()
    if namespaces is None:
        namespaces = namespaces_available()
    workdir = tempfile.mkdtemp(prefix="rlhf-sandbox-")
    cgroup = None
    try:
        if pids_cgroup_root():
            try:
                cgroup = Cgroup(pids_cgroup_root(), limits.max_processes)
            except OSError:  # e.g. the hierarchy turned read-only: run with the other layers
                cgroup = None
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8") as main:
            main.write(code)
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LC_ALL": "C.UTF-8"}
        command = [sys.executable, "-I", BOOTSTRAP, _settings(limits, cgroup, namespaces)]
        try:
            process = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as error:
            return SandboxResult("", f"could not start python: {error}", None)
        with process:
            stdout, stderr, reason = _read_capped(process, limits)
            _kill_everything(process, cgroup)
            exit_code = process.wait()
        return SandboxResult(
            stdout=_decode(stdout, limits.max_output_bytes),
            stderr=_decode(stderr, limits.max_output_bytes),
            exit_code=exit_code,
            timed_out=reason == "timeout",
            killed=_kill_reason(exit_code, reason),
            truncated=reason == "output limit",
        )
    finally:
        if cgroup is not None:
            cgroup.remove()
        _remove_tree(workdir)


def _head(text: str, room: int) -> str:
    return text if len(text) <= room else text[: max(room - 3, 0)] + "..."


def _tail(text: str, room: int) -> str:
    return text if len(text) <= room else "..." + text[len(text) - max(room - 3, 0) :]


def format_observation(result: SandboxResult, max_chars: int = 1000) -> str:
    """The text the agent sees after a run, at most about `max_chars` characters.

    stdout as printed; then, when there is any, "stderr:" and its last lines (a traceback's
    end is its most useful part); then one status line when the run did not end normally:
    "[exit code N]", "[killed: timeout]", "[killed: output limit]", "[killed: cpu limit]" or
    "[killed by signal N]". A silent, successful run reads "(no output)".
    """
    if result.killed:
        status = f"[killed: {result.killed}]"
    elif result.exit_code is not None and result.exit_code < 0:
        status = f"[killed by signal {-result.exit_code}]"
    elif result.exit_code != 0:
        status = f"[exit code {result.exit_code}]"
    else:
        status = ""
    budget = max_chars - (len(status) + 1 if status else 0)
    stdout = result.stdout.rstrip("\n")
    stderr = result.stderr.rstrip("\n")
    # Keep the start of stdout and the end of stderr, where a traceback says what went wrong.
    stdout = _head(stdout, budget // 2 if stderr else budget)
    if stderr:
        room = budget - (len(stdout) + 1 if stdout else 0) - len("stderr:\n")
        stderr = "stderr:\n" + _tail(stderr, room)
    text = "\n".join(part for part in (stdout, stderr, status) if part)[:max_chars]
    return text or "(no output)"
