"""The child side of a :class:`~rlhf.usercode.process.UserCodeProcess` (a fresh interpreter).

Protocol, over one duplex connection (pickled messages):
1. the parent sends `(sys.path, pickled (factory, args, kwargs))`; the child builds the hosted
   object `host = factory(*args, **kwargs)` and answers `("ready", None)`, or
   `("failed", error)` and exits;
2. then it answers `("call", method, args, kwargs)` with `("ok", host.method(*args, **kwargs))`
   or `("failed", error)`, and `("each", method, [args, ...])` with one such answer per
   `args`, as each call returns, stopping after the first "failed";
3. `None` (or the parent hanging up) ends the child.

`error` is the exception itself when it is one of rlhf's own (a ConfigError from the host
keeps its type and message), else a :class:`~rlhf.usercode.errors.UserCodeFailed` describing it.

The parent owns the child's life: the child ignores SIGINT and SIGTERM (Ctrl-C and a
scheduler's SIGTERM are the driver's to handle; it then stops the child), leads a process
group of its own (the parent kills the group: whatever the user code started dies with it),
and that group is killed as soon as the parent is gone: a watchdog process, forked first thing
(one thread, a few modules: a safe fork), blocks on a pipe that only the parent holds open and
kills the group at its end. Being a process of its own, it works whatever the child is doing,
a C loop holding the GIL included, and whichever thread of the parent started the child.

Only the standard library is imported here, so that the child starts in a fraction of a second.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from multiprocessing.connection import Connection
from typing import Any, Sequence

from rlhf.usercode.errors import UserCodeFailed


def main(argv: Sequence[str]) -> None:
    """`argv`: the connection's fd and the lifeline pipe's read fd."""
    conn_fd, lifeline_fd = int(argv[0]), int(argv[1])
    sys.argv = sys.argv[:1]  # neutral: the parent's command line is not the user code's business
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # the user's prints show when made, not lost at a kill
    ignore_stop_signals()
    _start_watchdog(lifeline_fd, conn_fd)
    os.set_inheritable(conn_fd, False)  # not for programs the user code runs
    conn = Connection(conn_fd)
    try:
        serve(conn)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a closed or broken stream: nothing left to save
                pass
        end_group()


def ignore_stop_signals() -> None:
    """Leave Ctrl-C and SIGTERM to the parent (again after user code that set handlers of its own)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def end_group() -> None:
    """Kill this process and everything user code started in its process group; never returns.
    (Also skips atexit handlers and non-daemon threads of user code, which could block an exit.)"""
    if os.getpgrp() == os.getpid():
        os.killpg(0, signal.SIGKILL)
    os._exit(0)


def serve(conn: Connection) -> None:
    """Build the hosted object, then answer calls until told to stop (see the module docstring)."""
    try:
        sys_path, payload = conn.recv()
        sys.path[:] = sys_path
        factory, args, kwargs = pickle.loads(payload)
        host = factory(*args, **kwargs)
    except BaseException as error:  # user code may raise anything, SystemExit included
        _send(conn, ("failed", describe(error)))
        return
    ignore_stop_signals()
    if _send(conn, ("ready", None)) != "ready":
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        kind, method = message[:2]
        calls = [message[2:]] if kind == "call" else [(args, {}) for args in message[2]]
        for args, kwargs in calls:
            try:
                reply = ("ok", getattr(host, method)(*args, **kwargs))
            except BaseException as error:  # as above: the parent decides what a failure means
                reply = ("failed", describe(error))
            ignore_stop_signals()
            sent = _send(conn, reply)
            if sent is None:
                return
            if sent == "failed":
                break


def describe(error: BaseException) -> BaseException:
    """`error` itself when the parent can rebuild it (one of rlhf's own exception types), else
    a UserCodeFailed with its type, message and traceback."""
    if type(error).__module__.startswith("rlhf."):
        try:
            return pickle.loads(pickle.dumps(error))
        except Exception:  # an rlhf exception with odd arguments: describe it like any other
            pass
    return UserCodeFailed(f"{type(error).__name__}: {_text(error)}", "".join(traceback.format_exception(type(error), error, error.__traceback__)))


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a user exception whose __str__ fails
        return f"<{type(error).__name__} whose message cannot be shown>"


def _send(conn: Connection, reply: tuple[str, Any]) -> str | None:
    """Send `reply` (or, when it cannot be pickled, a failure saying so); the kind of answer
    sent, None when the parent has gone."""
    try:
        conn.send(reply)
        return reply[0]
    except (BrokenPipeError, ConnectionResetError, EOFError):
        return None
    except Exception as error:  # the result does not pickle; pickling fails before anything is written
        failure = UserCodeFailed(f"the result could not be sent back to the trainer: {type(error).__name__}: {_text(error)}")
    try:
        conn.send(("failed", failure))
        return "failed"
    except OSError:
        return None


def _start_watchdog(lifeline_fd: int, conn_fd: int) -> None:
    """Fork the process that kills this one's group when the parent is gone (see the module
    docstring). It keeps only the lifeline: were it to hold the connection, the parent could
    not tell from its end that this process died."""
    leader = os.getpid()
    if os.fork() == 0:
        try:
            os.close(conn_fd)
            while os.read(lifeline_fd, 1):  # the parent never writes: this returns at its exit
                pass
        except BaseException:  # an OSError, or anything at all: end the group either way
            pass
        if os.getpgrp() == leader:
            os.killpg(leader, signal.SIGKILL)
        os._exit(0)
    os.close(lifeline_fd)


if __name__ == "__main__":
    main(sys.argv[1:])
