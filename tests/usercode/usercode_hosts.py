"""Hosted objects for the UserCodeProcess tests: the child process imports them by name, so
they live in a module of their own (on sys.path next to the tests, which the child inherits).
Standard library only, so that a child starts quickly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

from rlhf.config.errors import ConfigError


class Host:
    """Methods that behave, and methods that misbehave in every way user code can."""

    def __init__(self, tag: str = "host"):
        self.tag, self.calls = tag, 0

    def echo(self, value):
        self.calls += 1
        return self.tag, value, self.calls

    def pid(self) -> int:
        return os.getpid()

    def argv(self) -> list[str]:
        return list(sys.argv)

    def fail(self, text: str):
        raise ValueError(text)

    def exit(self, code: int):
        sys.exit(code)

    def crash(self, code: int):
        os._exit(code)

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def stubborn(self, marker: str):
        """Its own SIGALRM timer, set and cleared over and over, and a bare except around it."""
        open(marker, "w").close()
        signal.signal(signal.SIGALRM, lambda signum, frame: None)
        while True:
            try:
                signal.alarm(5)
                time.sleep(0.01)
                signal.alarm(0)
            except:  # noqa: E722 (the point of the test)
                pass

    def backtrack(self, marker: str):
        """Catastrophic regex backtracking: C code that holds the GIL for ages."""
        open(marker, "w").close()
        return bool(re.match(r"(a+)+$", "a" * 40 + "b"))

    def spawn_and_hang(self, marker: str):
        """Start a process of its own (it must die with this one), then hang."""
        child = subprocess.Popen(["sleep", "3600"])
        with open(marker, "w") as handle:
            handle.write(str(child.pid))
        time.sleep(3600)

    def unpicklable(self):
        return lambda: None


def config_error_factory():
    raise ConfigError("reward.sources.0: this host cannot be built")


def key_error_factory():
    raise KeyError("nope")


def slow_factory(seconds: float) -> Host:
    time.sleep(seconds)
    return Host()
