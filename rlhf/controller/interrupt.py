"""Stopping a run cleanly: SIGTERM or Ctrl-C finish the current step, write a checkpoint and
end the run (a second Ctrl-C stops at once, losing only the steps since the last checkpoint)."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator


class RunInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after checkpointing its last complete step."""


class StopRequest:
    """Set by SIGTERM / SIGINT while installed; the loop polls it between steps."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame) -> None:
        self.signal = signum
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: stop now


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Catch SIGTERM and SIGINT for the duration (only from the main thread, where Python
    delivers signals; elsewhere the request never fires)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {sig: signal.signal(sig, request._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield request
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
