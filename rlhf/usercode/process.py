"""`UserCodeProcess`: user code in a child process that a deadline can always stop.

    process = UserCodeProcess(MyHost, (path,), name="reward function 'score'")
    process.start()                                  # builds MyHost(path) in the child
    value = process.call("score", sample, timeout_s=5.0)
    process.close()

Nothing of the user's is imported in the parent: the hosted object (`factory(*args, **kwargs)`,
`factory` a top-level callable, pickled by reference) lives in the child, and each `call`
runs one of its methods there. A call past its `timeout_s` kills the child (SIGKILL to its process group)
and raises :class:`~rlhf.usercode.errors.DeadlineExceeded`; the next call starts a fresh child,
which builds the hosted object again (so state the host kept is lost then). What the user code
does cannot delay the caller beyond the deadline: not a `signal.alarm` of its own, a bare
`except:`, a C loop holding the GIL, nor `sys.exit`.

Why a fresh interpreter (`subprocess`, not `multiprocessing`): the driver holds torch's thread
pools (and maybe CUDA state), which a `fork` would copy half-initialised; the 'spawn' and
'forkserver' methods start clean too, but re-import the driver's `__main__` (the user's
training script, torch and all) and hand the child the driver's `sys.argv`. A plain
`python -c` imports only :mod:`rlhf.usercode.child` (standard library) and then whatever the
hosted object needs, so it is ready in about 0.1 s plus the user's own imports. It gets the
parent's `sys.path`, working directory and environment, a neutral `sys.argv`, and stdin from
/dev/null; its output goes to the parent's stdout and stderr.

The child never outlives the parent (see :mod:`rlhf.usercode.child`); processes still open at
interpreter exit are closed by an atexit hook. One caller at a time.
"""

from __future__ import annotations

import atexit
import os
import pickle
import signal
import subprocess
import sys
import threading
import weakref
from multiprocessing import Pipe
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rlhf.usercode.errors import DeadlineExceeded, ProcessDied, UserCodeError

_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from rlhf.usercode.child import main; main(sys.argv[2:])"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
"""The directory holding the `rlhf` package, so that the child finds the same copy."""
_LIVE: weakref.WeakSet[UserCodeProcess] = weakref.WeakSet()


class UserCodeProcess:
    """Hosts `factory(*args, **kwargs)` in a child process; see the module docstring.

    Args:
        factory: a top-level class or function (pickled by reference) that builds the hosted
            object in the child; rlhf's own exceptions it raises (a ConfigError) reach the
            caller of `start` as they are, any other as UserCodeFailed.
        name: what the process runs, for messages ("reward function 'score' (/x/r.py)").
        startup_timeout_s: how long building the hosted object (imports included) may take.

    Not thread-safe: one caller at a time.
    """

    def __init__(self, factory: Callable[..., object], args: tuple = (), kwargs: dict[str, Any] | None = None, *,
                 name: str = "user code", startup_timeout_s: float = 120.0):
        self.name, self.startup_timeout_s = name, startup_timeout_s
        try:
            self._setup = pickle.dumps((factory, tuple(args), dict(kwargs or {})))
        except Exception as error:
            raise TypeError(f"UserCodeProcess needs a top-level factory and picklable arguments: {error}") from None
        self._worker: _Worker | None = None
        self._closed = False
        self.starts = 0
        """How many child processes were started (a killed one is replaced on the next call)."""
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before the first start and after a kill)."""
        worker = self._worker
        return worker.process.pid if worker is not None else None

    def start(self) -> None:
        """Start the child unless it is running, and wait until the hosted object is built.

        Raises what the factory raised (see the class docstring), ProcessDied, or
        DeadlineExceeded after `startup_timeout_s`.
        """
        if self._closed:
            raise UserCodeError(f"the process of {self.name} is closed")
        if self._worker is not None:
            if not self._worker.owed:
                return
            self._discard(self._worker)  # a `call_each` left unfinished: it is still busy
        worker = _Worker(self._setup)
        self.starts += 1
        try:
            ok, error = worker.receive(self.startup_timeout_s, f"{self.name} was not ready")
        except BaseException:
            worker.kill()
            raise
        if not ok:
            worker.kill()
            raise error
        self._worker = worker

    def call(self, method: str, *args: Any, timeout_s: float, **kwargs: Any) -> Any:
        """`host.method(*args, **kwargs)` in the child (started first if needed; start-up time
        does not count against `timeout_s`).

        Raises UserCodeFailed (or one of rlhf's own exceptions) when the method raised: the
        child lives on; DeadlineExceeded after `timeout_s` or ProcessDied: the child is gone
        and the next call starts another. Whatever interrupts the wait (Ctrl-C's
        KeyboardInterrupt) kills the child and propagates.
        """
        self.start()
        worker = self._worker
        try:
            worker.send(("call", method, args, kwargs), answers=1)
            ok, value = worker.receive(timeout_s, f"{self.name} did not return")
        except BaseException:
            self._discard(worker)
            raise
        if not ok:
            raise value
        return value

    def call_each(self, method: str, calls: Sequence[tuple], *, timeout_s: float) -> Iterator[Any]:
        """`host.method(*args)` for each `args` in `calls`, in order, as a generator.

        The child runs the calls back to back from one message and answers each as it returns,
        which costs far less than `call` in a loop. Each call has its own `timeout_s`, counted
        from the answer before it. The first call that fails raises as `call` would (the calls
        after it are not run); so does closing the generator early, which kills a child that
        still has calls to run.
        """
        if not calls:
            return
        self.start()
        worker = self._worker
        try:
            worker.send(("each", method, list(calls)), answers=len(calls))
            for _ in calls:
                ok, value = worker.receive(timeout_s, f"{self.name} did not return")
                if not ok:
                    worker.owed = 0  # the child stops a batch at its first failure
                    raise value
                yield value
        finally:
            if worker.owed:  # past a deadline, dead, interrupted, or the caller stopped early
                self._discard(worker)

    def kill(self) -> None:
        """Kill the child now (if any); the next call starts another."""
        worker = self._worker
        if worker is not None:
            self._discard(worker)

    def close(self) -> None:
        """Stop the child (asked first, killed after a second) and refuse further calls.
        Idempotent; safe at interpreter exit."""
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(grace_s=0 if worker.owed else 1.0)

    def _discard(self, worker: _Worker) -> None:
        if self._worker is worker:
            self._worker = None
        worker.kill()

    def __enter__(self) -> UserCodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown; the child's lifeline ends it anyway
            pass


class _Worker:
    """One child process: its connection, the lifeline pipe only the parent writes to, the
    child's process group (led by the child), and how many answers the child still owes."""

    def __init__(self, setup: bytes):
        if not sys.executable:
            raise UserCodeError("cannot start a child process: sys.executable is not set in this interpreter")
        self.conn, child_conn = Pipe(duplex=True)
        lifeline_r, self.lifeline_w = os.pipe()
        # a Ctrl-C may close the pipes from the main thread while a caller's thread, which saw the
        # child die, closes them too: each descriptor must be closed exactly once (a second close
        # could hit a descriptor the process has since reused)
        self._pipes_lock = threading.Lock()
        try:
            # the interpreter's own flags (-O, -W ..., -X ...) carry over, as multiprocessing does it
            self.process = subprocess.Popen(
                [sys.executable, *subprocess._args_from_interpreter_flags(), "-c", _BOOT, _PACKAGE_ROOT,
                 str(child_conn.fileno()), str(lifeline_r)],
                pass_fds=(child_conn.fileno(), lifeline_r), stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            self.conn.close()
            os.close(self.lifeline_w)
            raise
        finally:
            child_conn.close()  # the child holds the only other end: EOF here means it is gone
            os.close(lifeline_r)
        self.owed = 1  # the start-up answer
        try:
            self.conn.send((list(sys.path), setup))
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: the start-up answer reports how

    def send(self, message: tuple, answers: int) -> None:
        try:
            self.conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            raise self.died() from None
        self.owed += answers

    def receive(self, timeout_s: float, late: str) -> tuple[bool, Any]:
        """The next answer: (True, value), or (False, the exception the child sent); raises
        DeadlineExceeded (`late` starts its message) after `timeout_s` (the child killed),
        or ProcessDied."""
        try:
            ready = self.conn.poll(timeout_s)
            kind, value = self.conn.recv() if ready else (None, None)
        except (EOFError, OSError):
            raise self.died() from None
        if not ready:
            self.kill()
            raise DeadlineExceeded(f"{late} within {timeout_s:g} s; its process was killed")
        self.owed -= 1
        return kind != "failed", value

    def alive(self) -> bool:
        return self.process.poll() is None

    def died(self) -> ProcessDied:
        """The error for a child that hung up: how it ended."""
        try:
            code = self.process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:  # closed its end but lives on: treat it as dead
            self.kill()
            code = self.process.returncode
        self.close_pipes()
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return ProcessDied(f"its process {how}")

    def kill(self) -> None:
        """SIGKILL the child's process group (before reaping the child, so that the group id
        cannot have been reused), then reap it."""
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.process.wait()
        self.close_pipes()

    def stop(self, grace_s: float) -> None:
        """Ask the child to end (it kills its own group), then kill it after `grace_s`."""
        try:
            if grace_s > 0:
                self.conn.send(None)
                self.process.wait(timeout=grace_s)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def forget(self) -> None:
        """In a forked copy of the parent: close this copy's ends of the pipes, kill nothing."""
        self.process.returncode = 0  # not ours to wait for: the copy's Popen must not try
        self.close_pipes()

    def close_pipes(self) -> None:
        with self._pipes_lock:
            if not self.conn.closed:
                self.conn.close()
            if self.lifeline_w is not None:
                os.close(self.lifeline_w)
                self.lifeline_w = None


@atexit.register
def _close_live() -> None:
    for process in list(_LIVE):
        process.close()


def _forget_in_forked_child() -> None:
    """A forked copy of this process (a data loader, an engine's helper) must not hold the
    children's pipes: the lifeline above all, whose last copy closing tells a child that its
    parent is gone. Nor may it stop or kill them, which are the parent's."""
    for process in list(_LIVE):
        worker, process._worker = process._worker, None
        process._closed = True
        if worker is not None:
            worker.forget()


os.register_at_fork(after_in_child=_forget_in_forked_child)
