"""UserCodeProcess: user code in a child process that a deadline always stops, that ignores
Ctrl-C, and that never outlives its parent (real processes, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from process_helpers import alive, descendants, wait_gone
from usercode_hosts import Host, config_error_factory, key_error_factory, slow_factory

from rlhf.config.errors import ConfigError
from rlhf.usercode.errors import DeadlineExceeded, ProcessDied, UserCodeError, UserCodeFailed
from rlhf.usercode.process import UserCodeProcess


@pytest.fixture
def process():
    with UserCodeProcess(Host, ("t",), name="test host") as hosted:
        yield hosted
    assert hosted.pid is None


def wait_for(path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_calls_run_in_one_child_that_keeps_its_state(process):
    assert process.call("echo", 1, timeout_s=10) == ("t", 1, 1)
    assert process.call("echo", value=[2], timeout_s=10) == ("t", [2], 2)
    child = process.call("pid", timeout_s=10)
    assert child == process.pid != os.getpid() and process.starts == 1
    assert child in descendants()
    assert process.call("argv", timeout_s=10) == ["-c"]  # not this process's command line


def test_an_exception_comes_back_described_and_the_child_lives_on(process):
    child = process.call("pid", timeout_s=10)
    with pytest.raises(UserCodeFailed, match="ValueError: bad input") as info:
        process.call("fail", "bad input", timeout_s=10)
    assert "Traceback" in info.value.details and "usercode_hosts.py" in info.value.details
    with pytest.raises(UserCodeFailed, match=r"SystemExit: 3"):
        process.call("exit", 3, timeout_s=10)
    with pytest.raises(UserCodeFailed, match="could not be sent back"):
        process.call("unpicklable", timeout_s=10)
    assert process.call("pid", timeout_s=10) == child


@pytest.mark.parametrize("method", ["sleep", "stubborn", "backtrack"])
def test_a_call_past_its_deadline_is_killed_whatever_it_does(process, tmp_path, method):
    """Blocked in a system call, fighting the timer with its own alarm and a bare except, or
    in a C loop holding the GIL: each is stopped at the deadline."""
    first = process.call("pid", timeout_s=10)
    args = (3600,) if method == "sleep" else (str(tmp_path / "started"),)
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"test host did not return within 0.5 s; its process was killed"):
        process.call(method, *args, timeout_s=0.5)
    assert time.monotonic() - started < 3
    assert process.pid is None and not alive(first)
    assert process.call("echo", "again", timeout_s=10) == ("t", "again", 1)  # a fresh child, state rebuilt
    assert process.starts == 2


def test_what_user_code_started_dies_with_it(process, tmp_path):
    marker = tmp_path / "grandchild"
    with pytest.raises(DeadlineExceeded):
        process.call("spawn_and_hang", str(marker), timeout_s=1.0)
    assert not wait_gone({int(marker.read_text())}, 5.0)


def test_a_child_that_dies_is_replaced(process):
    with pytest.raises(ProcessDied, match="its process exited with status 7"):
        process.call("crash", 7, timeout_s=10)
    assert process.call("echo", 1, timeout_s=10) == ("t", 1, 1)


def test_the_child_ignores_ctrl_c(process):
    child = process.call("pid", timeout_s=10)
    os.kill(child, signal.SIGINT)
    os.kill(child, signal.SIGTERM)
    assert process.call("sleep", 0.2, timeout_s=10) == 0.2
    assert process.call("pid", timeout_s=10) == child


def test_call_each_streams_answers_and_stops_at_the_first_failure(process):
    assert list(process.call_each("echo", [(1,), (2,), (3,)], timeout_s=10)) == [("t", 1, 1), ("t", 2, 2), ("t", 3, 3)]
    child = process.pid
    results = []
    with pytest.raises(UserCodeFailed, match="ValueError: second"):
        for value in process.call_each("fail", [("second",), ("third",)], timeout_s=10):
            results.append(value)
    assert results == [] and process.pid == child  # the child stopped the batch and lives on
    stream = process.call_each("sleep", [(0.01,), (3600,)], timeout_s=0.5)
    assert next(stream) == 0.01
    with pytest.raises(DeadlineExceeded):
        next(stream)
    assert process.pid is None


def test_a_stream_left_unfinished_kills_its_busy_child(process):
    stream = process.call_each("sleep", [(0.01,), (3600,)], timeout_s=60)
    assert next(stream) == 0.01
    child = process.pid
    stream.close()
    assert process.pid is None and not alive(child)
    assert process.call("echo", 1, timeout_s=10) == ("t", 1, 1)


def test_setup_errors_reach_the_caller_of_start():
    with pytest.raises(ConfigError, match=r"^reward.sources.0: this host cannot be built$"):
        UserCodeProcess(config_error_factory).start()
    with pytest.raises(UserCodeFailed, match="KeyError: 'nope'"):
        UserCodeProcess(key_error_factory).start()
    with pytest.raises(DeadlineExceeded, match="slow was not ready within 0.3 s"):
        UserCodeProcess(slow_factory, (3600,), name="slow", startup_timeout_s=0.3).start()


def test_close_stops_the_child_and_refuses_calls():
    hosted = UserCodeProcess(Host)
    child = hosted.call("pid", timeout_s=10)
    hosted.close()
    assert not alive(child)
    with pytest.raises(UserCodeError, match="closed"):
        hosted.call("pid", timeout_s=10)


DRIVER = """
import os, sys, threading, time
sys.path[:0] = [{tests!r}, {root!r}]
from rlhf.usercode.process import UserCodeProcess
from usercode_hosts import Host

def drive():
    process = UserCodeProcess(Host)
    child = process.call("pid", timeout_s=30)
    copy = os.fork() if {forked_copy} else None  # a forked copy of the parent (a data loader's worker) lives on
    if copy == 0:
        time.sleep(3600)
    print(child, copy, flush=True)
    process.call({method!r}, {marker!r}, timeout_s=3600)

if {in_thread}:  # the thread that started the child is not the main thread
    threading.Thread(target=drive).start()
else:
    drive()
"""


@pytest.mark.parametrize(("method", "in_thread", "forked_copy"), [
    ("stubborn", False, False), ("backtrack", False, False), ("backtrack", True, False), ("stubborn", False, True),
], ids=["blocked", "holding-the-gil", "started-by-a-thread", "parent-forked-a-copy"])
def test_the_child_dies_with_a_killed_parent(tmp_path, method, in_thread, forked_copy):
    """SIGKILL leaves the parent no chance to clean up: the child's group still goes, also
    while the child is stuck in C code holding the GIL, when a thread started it, and when a
    forked copy of the parent lives on."""
    marker = tmp_path / "started"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER).format(tests=str(Path(__file__).parent), root=str(Path(__file__).parents[2]), method=method,
                                                      marker=str(marker), in_thread=in_thread, forked_copy=forked_copy))
    driver = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    copy = None
    try:
        child, copy = (None if word == "None" else int(word) for word in driver.stdout.readline().split())
        wait_for(marker)
        family = descendants(driver.pid) - {copy}
        assert child in family and len(family) == 2  # the child and its watchdog
        driver.kill()
        driver.wait(10)
        assert not wait_gone(family, 5.0), "the child outlived its killed parent"
    finally:
        driver.kill()
        driver.stdout.close()
        if copy is not None:
            os.kill(copy, signal.SIGKILL)
