"""The python tool's sandbox: normal code runs; an infinite loop, CPU burn, output flood, memory
hog, fork bomb, escaped daemon, network access and file access outside the working directory
are all contained, come back as results (never exceptions), and leave nothing behind."""

from __future__ import annotations

import os
import time

import pytest

from rlhf.envs.tools.containment import namespaces_available, pids_cgroup_root
from rlhf.envs.tools.sandbox import SandboxLimits, format_observation, run_python
from sandbox_helpers import FORK_BOMB, sandbox_processes

FAST = SandboxLimits(timeout_s=2.0, cpu_s=1, memory_mb=256, max_output_bytes=2000, max_processes=8)
KERNEL_PROCESS_CAP = pids_cgroup_root() is not None or os.geteuid() != 0


@pytest.fixture(autouse=True)
def _nothing_left_behind():
    yield
    deadline = time.monotonic() + 2.0
    while sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes() == []


def test_normal_code_prints_its_result_in_a_fresh_directory_that_is_removed():
    result = run_python("import os, math\nprint(math.factorial(10))\nprint(os.getcwd())\nprint(sorted(os.listdir('.')))", FAST)
    answer, workdir, listing = result.stdout.splitlines()
    assert (answer, listing, result.exit_code, result.killed) == ("3628800", "['main.py']", 0, None)
    assert os.path.basename(workdir).startswith("rlhf-sandbox-") and not os.path.exists(workdir)
    assert format_observation(result).startswith("3628800\n")


def test_writing_inside_is_allowed_and_outside_refused():
    code = "open('notes.txt', 'w').write('ok'); print(open('notes.txt').read())\nopen('/tmp/rlhf-sandbox-escape.txt', 'w')"
    result = run_python(code, FAST)
    assert result.stdout == "ok\n" and result.exit_code == 1
    assert "PermissionError: sandbox: writing '/tmp/rlhf-sandbox-escape.txt'" in result.stderr
    assert not os.path.exists("/tmp/rlhf-sandbox-escape.txt")


@pytest.mark.parametrize("code", ["open('/etc/shadow').read()", "import os; os.remove('/etc/hostname')", "import os; os.listdir('/root')"])
def test_sensitive_files_are_refused(code):
    result = run_python(code, FAST)
    assert result.exit_code == 1 and "PermissionError: sandbox:" in result.stderr


def test_an_exception_is_an_observation_without_the_bootstraps_frames():
    result = run_python("def f():\n    return 1 / 0\nf()", FAST)
    assert result.exit_code == 1 and "ZeroDivisionError" in result.stderr
    assert "sandbox_boot" not in result.stderr and 'File "main.py", line 2, in f' in result.stderr
    assert format_observation(result).endswith("ZeroDivisionError: division by zero\n[exit code 1]")


def test_an_infinite_loop_is_killed_at_the_timeout():
    started = time.monotonic()
    result = run_python("import time\nwhile True: time.sleep(0.01)", FAST)
    assert result.timed_out and result.killed == "timeout" and result.exit_code == -9
    assert time.monotonic() - started < FAST.timeout_s + 1.5
    assert format_observation(result) == "[killed: timeout]"


def test_cpu_burn_hits_the_cpu_limit_before_the_wall_clock():
    result = run_python("while True: pass", SandboxLimits(timeout_s=10.0, cpu_s=1))
    assert result.killed == "cpu limit" and not result.timed_out


def test_an_output_flood_is_cut_at_the_byte_limit_at_once():
    started = time.monotonic()
    result = run_python("while True: print('x' * 1000)", FAST)
    assert result.killed == "output limit" and result.truncated
    assert len(result.stdout.encode()) <= FAST.max_output_bytes
    assert time.monotonic() - started < 1.5
    assert len(format_observation(result, max_chars=300)) <= 300


def test_a_memory_hog_gets_a_memory_error():
    result = run_python("block = bytearray(2 * 1024**3)\nprint('allocated')", FAST)
    assert result.exit_code == 1 and "MemoryError" in result.stderr and "allocated" not in result.stdout


def test_starting_processes_is_refused_by_default():
    for code in ["import os\nwhile True: os.fork()", "import subprocess; subprocess.run(['true'])", "import os; os.system('true')"]:
        result = run_python(code, FAST)
        assert result.exit_code == 1 and "not allowed" in result.stderr, result


@pytest.mark.skipif(not KERNEL_PROCESS_CAP, reason="root without a writable pids cgroup: no kernel cap on processes")
def test_a_fork_bomb_is_capped_by_the_kernel_and_killed():
    result = run_python(FORK_BOMB, SandboxLimits(timeout_s=2.0, cpu_s=2, max_processes=8, allow_processes=True))
    assert result.killed == "timeout"
    forked = int(result.stdout.split()[1])
    assert 0 < forked < 8
    # the autouse fixture checks that none of the sleeping children survived


def test_a_daemon_that_leaves_the_session_dies_with_the_run():
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent done')"
    result = run_python(code, SandboxLimits(timeout_s=2.0, allow_processes=True))
    assert result.stdout == "parent done\n" and result.exit_code == 0
    # the autouse fixture checks that the daemon is gone


NETWORK = "import socket\nsocket.create_connection(('1.1.1.1', 53), timeout=1)\nprint('connected')"


@pytest.mark.skipif(not namespaces_available(), reason="no network namespaces on this machine")
def test_the_network_namespace_has_no_route():
    result = run_python(NETWORK, FAST)
    assert "connected" not in result.stdout and "Network is unreachable" in result.stderr


def test_without_namespaces_the_audit_hook_refuses_sockets():
    result = run_python(NETWORK, FAST, namespaces=False)
    assert "connected" not in result.stdout and "sandbox: network access is not allowed" in result.stderr


def test_ctypes_is_refused():
    result = run_python("import ctypes", FAST)
    assert result.exit_code == 1 and "importing ctypes is not allowed" in result.stderr


def test_environment_is_scrubbed():
    os.environ["RLHF_SANDBOX_SECRET"] = "hunter2"
    try:
        result = run_python("import os; print(sorted(os.environ))", FAST)
    finally:
        del os.environ["RLHF_SANDBOX_SECRET"]
    assert "RLHF_SANDBOX_SECRET" not in result.stdout and "HOME" in result.stdout


def test_exit_codes_and_silence_are_formatted():
    assert format_observation(run_python("raise SystemExit(3)", FAST)) == "[exit code 3]"
    assert format_observation(run_python("x = 1", FAST)) == "(no output)"
