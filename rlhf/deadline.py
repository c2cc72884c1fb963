"""Run a call with a wall-clock limit, from the main thread or from any other.

In the main thread the limit is a real-time interval timer (`signal.setitimer`): when it fires,
:class:`CallTimedOut` is raised inside the call, which stops it where it stands (between two
bytecodes, or in a blocking system call such as `time.sleep`). Signal handlers run only in
the main thread, so elsewhere (a Ray actor's method, a thread pool) the call runs in a daemon
thread that the caller waits for; a call past its limit is then abandoned: it may go on in the
background until the process exits, but the caller moves on. The timer is used only while no
other SIGALRM handler or timer is set (pytest-timeout, a user's own alarm), so it never
replaces one; a platform without `setitimer` always takes the thread.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CallTimedOut(BaseException):
    """The call did not return within its limit. A BaseException, so that an `except
    Exception` in the called code cannot swallow it."""


def call_with_timeout(call: Callable[[], T], timeout_s: float) -> T:
    """`call()`, or CallTimedOut when it has not returned after `timeout_s` seconds."""
    if _timer_is_free():
        return _call_with_timer(call, timeout_s)
    return _call_in_thread(call, timeout_s)


def _timer_is_free() -> bool:
    """True in the main thread of a platform with `setitimer` when nobody else uses SIGALRM."""
    return (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGALRM) is signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL)[0] == 0)


def _call_with_timer(call: Callable[[], T], timeout_s: float) -> T:
    fired = False

    def on_alarm(signum, frame) -> None:
        nonlocal fired
        fired = True
        raise CallTimedOut

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
        try:
            result = call()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    if fired:  # the call caught CallTimedOut (a bare `except:`) and returned later anyway
        raise CallTimedOut
    return result


def _call_in_thread(call: Callable[[], T], timeout_s: float) -> T:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = call()
        except BaseException as error:  # handed to the waiting caller, who re-raises it
            outcome["error"] = error

    thread = threading.Thread(target=target, name="call-with-timeout", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise CallTimedOut
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
