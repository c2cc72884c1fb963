"""Stopping a run cleanly: SIGTERM or Ctrl-C finish the current step, write a checkpoint and
end the run (a second Ctrl-C stops at once, losing only the steps since the last checkpoint).

The first signal is acknowledged at once, not when the step ends: a step can take minutes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after checkpointing its last complete step."""


class StopRequest:
    """Set by SIGTERM / SIGINT while installed; the loop polls it between steps."""

    def __init__(self, what: str = "this step") -> None:
        self.signal: int | None = None
        self.what = what

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame) -> None:
        first = self.signal is None
        self.signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now
        if first:
            again = " (Ctrl-C again to stop now)" if signum == signal.SIGINT else ""
            _say(f"{signal.Signals(signum).name}: stopping after {self.what}{again}\n")


def _say(text: str) -> None:
    """Write `text` to stderr from a signal handler. The handler runs between two bytecodes of
    the main thread, which may be inside a write to the same buffered stream (print would then
    fail with a reentrant call): one unbuffered write to the file descriptor cannot."""
    try:
        descriptor = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
        if os.isatty(descriptor):  # a progress bar may be drawing the current line
            text = "\n" + text
        os.write(descriptor, text.encode("utf-8", "replace"))
    except (OSError, ValueError):  # no usable stderr: the request still stands
        pass


@contextmanager
def stop_on_signals(what: str = "this step") -> Iterator[StopRequest]:
    """Catch SIGTERM and SIGINT for the duration (only from the main thread, where Python
    delivers signals; elsewhere the request never fires). `what` ends the message that
    acknowledges the first signal: "stopping after <what>"."""
    request = StopRequest(what)
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
