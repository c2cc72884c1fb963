"""`VerifierPool`: persistent worker processes that run `fn(response, ground_truth)` for a list
of samples, each under a wall-clock timeout.

Why processes: a verifier on model output can hang (sympy on `9^{9^{9^9}}`), crash or leak,
and a hung Python thread cannot be stopped. A worker that runs past the timeout is killed
(SIGKILL) and replaced; its sample scores 0.0 and is counted. Nothing the worker does can
block the caller for longer than the timeout, plus the start-up limit of a replacement.

Workers come from the 'forkserver' start method ('spawn' where there is none): a fresh
interpreter, never a fork of a parent that holds torch threads or CUDA state. They start on the
first `score_all` (or `start()`), run an optional `warmup` before taking samples, and are reused
across batches. `fn` must be a top-level function, because it is pickled by reference.

Protocol (one duplex pipe per worker): the worker sends "ready" once warmed up; the parent sends
`(fn, response, ground_truth)` to an idle ready worker and starts its clock; the worker answers
`(score, error or None)`; `None` from the parent stops the worker. A worker also exits on
its own when the parent process dies, even in the middle of a hung sample.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import weakref
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

_READY = "ready"
_MAX_START_FAILURES = 3
_LIVE_POOLS: weakref.WeakSet[VerifierPool] = weakref.WeakSet()


def _serve(conn: Any, warmup: Callable[[], object] | None) -> None:
    """A worker's main loop (runs in the child process's main thread)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent()
    warmup_error = None
    if warmup is not None:
        try:
            warmup()
        except Exception as error:  # a broken warm-up only costs speed; report it
            warmup_error = f"{type(error).__name__}: {error}"
    conn.send((_READY, warmup_error))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        except Exception as error:  # the task did not unpickle (fn not importable here)
            conn.send((0.0, f"could not load the task: {type(error).__name__}: {error}"))
            continue
        if task is None:
            return
        fn, response, ground_truth = task
        try:
            conn.send((float(fn(response, ground_truth)), None))
        except Exception as error:
            conn.send((0.0, f"{type(error).__name__}: {error}"))


def _exit_with_parent() -> None:
    """Exit as soon as the parent process dies, even in the middle of a hung sample. (An idle
    worker would notice its closed pipe, but a busy one would not, and with 'forkserver' an
    orphan keeps the fork server alive too.)"""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's sentinel pipe closes
        os._exit(1)

    threading.Thread(target=watch, name="rlhf-verifier-parent-watch", daemon=True).start()


class _Worker:
    """One child process, its end of the pipe, and the sample it is running."""

    def __init__(self, context: Any, warmup: Callable[[], object] | None, startup_timeout_s: float):
        self.conn, child_conn = context.Pipe(duplex=True)
        self.process = context.Process(target=_serve, args=(child_conn, warmup), daemon=True, name="rlhf-verifier")
        self.process.start()
        child_conn.close()  # so that the parent sees EOF when the child dies
        self.ready = False
        self.ready_by = time.monotonic() + startup_timeout_s
        self.task: int | None = None
        self.deadline = 0.0

    def request_stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass  # already gone

    def stop(self, grace_s: float) -> None:
        """Wait up to `grace_s` for the process to exit, then kill it; release its resources."""
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.process.close()


class VerifierPool:
    """Runs `fn(response, ground_truth) -> float` over samples in `num_workers` processes.

    Args:
        num_workers: worker processes; 0 runs `fn` in the calling thread (for debugging: no
            timeout, no isolation).
        timeout_s: wall-clock limit per sample, from the moment a worker receives it.
        warmup: a top-level function each worker calls before its first sample (imports,
            caches), so that start-up cost is not charged to a sample's timeout.
        startup_timeout_s: how long a new worker may take to become ready; past it `score_all`
            raises RuntimeError (the environment is broken; it never waits forever).

    Attributes:
        last_errors: samples of the last `score_all` whose `fn` raised or crashed its worker.

    Use as a context manager or call `close()`; pools still open at interpreter exit are
    closed by an atexit hook, and workers exit by themselves when the parent dies. Not
    thread-safe: one caller at a time.
    """

    def __init__(self, num_workers: int = 2, timeout_s: float = 5.0, warmup: Callable[[], object] | None = None, startup_timeout_s: float = 120.0):
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.num_workers, self.timeout_s, self.warmup = num_workers, timeout_s, warmup
        self.startup_timeout_s = startup_timeout_s
        self.last_errors = 0
        self._workers: list[_Worker] = []
        self._closed = False
        self._start_failures = 0
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        _LIVE_POOLS.add(self)

    def start(self) -> None:
        """Start the workers now rather than on the first `score_all` (they warm up meanwhile);
        replace any that died since the last call."""
        if self._closed:
            raise RuntimeError("VerifierPool is closed")
        for slot, worker in enumerate(self._workers):
            if not worker.process.is_alive():
                worker.stop(grace_s=0)
                self._workers[slot] = self._spawn()
        while len(self._workers) < self.num_workers:
            self._workers.append(self._spawn())

    def score_all(self, fn: Callable[[str, str], float], responses: Sequence[str], ground_truths: Sequence[str]) -> tuple[list[float], int]:
        """Scores of `fn` on each (response, ground truth), in order, and how many timed out.

        A sample that times out, raises or crashes its worker scores 0.0; timeouts are
        returned, the other two are counted in `last_errors` and logged.
        """
        if len(responses) != len(ground_truths):
            raise ValueError(f"{len(responses)} responses but {len(ground_truths)} ground truths")
        _check_picklable(fn)
        if not responses:
            return [], 0
        if self.num_workers == 0:
            return self._score_in_process(fn, responses, ground_truths)
        self.start()
        scores = [0.0] * len(responses)
        pending = deque(range(len(responses)))
        timeouts, errors, first_error = 0, 0, None
        while pending or any(w.task is not None for w in self._workers):
            self._dispatch(pending, fn, responses, ground_truths)
            self._wait()
            for slot, worker in enumerate(self._workers):
                outcome, message = self._collect(worker, scores)
                timeouts += outcome == "timeout"
                errors += outcome == "error"
                first_error = first_error or message
                if outcome in ("timeout", "error", "dead"):
                    worker.stop(grace_s=0)
                    self._workers[slot] = self._spawn()
        self.last_errors = errors
        if errors:
            log.warning("verifier %s: %d of %d samples failed (scored 0.0); first: %s", _name(fn), errors, len(scores), first_error)
        return scores, timeouts

    def _dispatch(self, pending: deque, fn: Callable, responses: Sequence[str], ground_truths: Sequence[str]) -> None:
        for worker in self._workers:
            if not pending:
                return
            if worker.ready and worker.task is None:
                index = pending.popleft()
                worker.task, worker.deadline = index, time.monotonic() + self.timeout_s
                try:
                    worker.conn.send((fn, responses[index], ground_truths[index]))
                except (OSError, ValueError):
                    pass  # the worker died; `_collect` sees it and scores the sample 0.0

    def _wait(self) -> None:
        """Block until a worker answers or dies, or until the nearest deadline."""
        deadlines = [w.deadline if w.ready else w.ready_by for w in self._workers if w.task is not None or not w.ready]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else 0.0
        wait([w.conn for w in self._workers] + [w.process.sentinel for w in self._workers], timeout)

    def _collect(self, worker: _Worker, scores: list[float]) -> tuple[str | None, str | None]:
        """Read what `worker` sent; returns (outcome, error message). Outcomes: None (nothing
        to do), "ok", "error" (raised or crashed), "timeout", "dead" (died while idle)."""
        hung_up = False
        try:
            if worker.conn.poll():
                value, error = worker.conn.recv()
                if not worker.ready:  # value is _READY, error the warm-up's
                    if error is not None:
                        log.warning("verifier pool warm-up failed: %s", error)
                    worker.ready, self._start_failures = True, 0
                    return None, None
                scores[worker.task], worker.task = value, None
                return ("error", error) if error is not None else ("ok", None)
        except (EOFError, OSError):
            hung_up = True  # it died (or is exiting)
        now = time.monotonic()
        if hung_up or not worker.process.is_alive():
            if worker.task is None and not worker.ready:
                return self._start_failed("a verifier worker died while starting")
            if worker.task is None:
                return "dead", None
            worker.task = None
            worker.process.join(1.0)
            return "error", f"the worker died (exit code {worker.process.exitcode})"
        if worker.task is not None and now >= worker.deadline:
            worker.task = None
            return "timeout", None
        if not worker.ready and now >= worker.ready_by:
            return self._start_failed(f"a verifier worker was not ready after {self.startup_timeout_s:.0f} s")
        return None, None

    def _start_failed(self, reason: str) -> tuple[str, None]:
        self._start_failures += 1
        if self._start_failures >= _MAX_START_FAILURES:
            self.close()
            raise RuntimeError(
                f"{reason} ({self._start_failures} times); the verifier pool is closed. A script that "
                "creates one must guard its entry point with `if __name__ == '__main__':`, because "
                "workers re-import the main module."
            )
        return "dead", None

    def _spawn(self) -> _Worker:
        return _Worker(self._context, self.warmup, self.startup_timeout_s)

    def _score_in_process(self, fn: Callable, responses: Sequence[str], ground_truths: Sequence[str]) -> tuple[list[float], int]:
        scores, self.last_errors = [], 0
        for response, ground_truth in zip(responses, ground_truths):
            try:
                scores.append(float(fn(response, ground_truth)))
            except Exception:
                if not self.last_errors:  # one traceback per call is enough
                    log.warning("verifier %s raised; scored 0.0", _name(fn), exc_info=True)
                scores.append(0.0)
                self.last_errors += 1
        return scores, 0

    def close(self) -> None:
        """Stop every worker (a short grace period, then SIGKILL). Idempotent."""
        if self._closed:
            return
        self._closed = True
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.request_stop()
        deadline = time.monotonic() + 1.0
        for worker in workers:
            worker.stop(grace_s=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass  # interpreter shutdown: the atexit hook or the workers' EOF check covers it


def _check_picklable(fn: Callable) -> None:
    try:
        pickle.dumps(fn)
    except Exception as error:
        raise TypeError(f"VerifierPool needs a top-level function (pickled by reference), got {fn!r}: {error}") from None


def _name(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@atexit.register
def _close_live_pools() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()
