"""`EnvPool`: the environments of a batch of episodes, stepped in lockstep.

    with build_env_pool(config.env) as pool:
        observations = pool.reset(rows)                  # episode ids 0..len(rows)-1
        steps = pool.step({0: "7", 2: "12"}, turn=0)     # {episode id: Step}, only those given
        actions = pool.demo_actions([0, 2], rng)         # {episode id: action}, for the warm start

Built-in environments (`env.type` a name of :data:`rlhf.envs.registry.BUILTIN_ENVS`) run in
this process, without a deadline: they are our code, quick and trusted. A user's class
(`env.type: class`) runs in `env.workers` worker processes (:mod:`rlhf.envs.user_class`);
episode i lives in worker i % workers, and the workers step their episodes at the same time,
so slow environments run in parallel. Every call into a worker has a deadline, env.timeout_s
per reset, step or demo_action (a worker past it is killed), so the pool never hangs.

Every Step is checked (:func:`rlhf.envs.errors.checked_step`); whatever goes wrong during the
run is an EnvError naming the environment, the episode and the turn, after which the pool
refuses to step until the next `reset` (a killed worker lost its episodes).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from rlhf.config.errors import ConfigError
from rlhf.envs.base import Step
from rlhf.envs.errors import EnvError
from rlhf.envs.registry import BUILTIN_ENVS, USER_CLASS, builtin_env_class, env_types
from rlhf.envs.user_class import Episodes, check_environment, host_user_env
from rlhf.usercode.errors import DeadlineExceeded, ProcessDied, UserCodeError, UserCodeFailed
from rlhf.usercode.process import UserCodeProcess

if TYPE_CHECKING:
    from rlhf.config.env_schema import EnvConfig

STARTUP_TIMEOUT_S = 120.0
"""How long a worker may take to import the user's file and build the checking instance."""


def build_env_pool(env: EnvConfig) -> EnvPool:
    """The pool of `env.type`: built-ins in this process, a user's class in env.workers worker
    processes (started here: the class is imported and checked, ConfigError if it cannot serve)."""
    if env.type in BUILTIN_ENVS:
        cls, label = builtin_env_class(env.type), f"environment {env.type!r}"
        can_demonstrate = check_environment(cls, env.kwargs, label)
        return EnvPool([LocalShard(Episodes(cls, env.kwargs, label, can_demonstrate))], label, can_demonstrate)
    if env.type != USER_CLASS:
        raise ConfigError(f"env.type: unknown environment {env.type!r}; valid ones: {', '.join(env_types())}")
    if not env.path or not env.name:
        raise ConfigError("env.path and env.name: env.type 'class' needs the file (env.path) and the class (env.name)")
    shards = [ProcessShard(env.path, env.name, env.kwargs, env.timeout_s) for _ in range(max(1, env.workers))]
    try:
        described = _in_parallel([(shard.start, ()) for shard in shards])
    except BaseException:
        for shard in shards:
            shard.close()
        raise
    label, can_demonstrate = described[0]
    return EnvPool(shards, label, can_demonstrate)


class EnvPool:
    """The episodes of one batch (see the module docstring). Not thread-safe.

    Attributes:
        label: the environment, for messages ("environment class 'Maze' (/x/maze.py)").
        can_demonstrate: the environment has demo_action (the supervised warm start needs it).
    """

    def __init__(self, shards: Sequence[LocalShard | ProcessShard], label: str, can_demonstrate: bool):
        self.shards, self.label, self.can_demonstrate = list(shards), label, can_demonstrate
        self.size = 0
        """Episodes of the last reset."""
        self._failed: str | None = "no episodes yet: call reset first"
        self._closed = False

    def reset(self, rows: Sequence[dict]) -> list[str]:
        """Start one fresh episode per row (ids 0..len(rows)-1, earlier episodes dropped);
        their first observations, in row order."""
        if self._closed:
            raise ValueError(f"EnvPool of {self.label}: the pool is closed")
        self.size, self._failed = 0, "an earlier reset failed"
        self._on_shards("clear", [[()] for _ in self.shards])
        calls = {i: (i, row) for i, row in enumerate(rows)}
        observations = self._run("reset_one", calls)
        self.size, self._failed = len(rows), None
        return [observations[i] for i in range(len(rows))]

    def step(self, actions: Mapping[int, str], turn: int) -> dict[int, Step]:
        """Step episode i with actions[i], for each i given; {i: its Step}. `turn`: the
        episodes' turn index (0 for their first action), for messages."""
        self._check_ids(actions)
        bad = [i for i, action in actions.items() if not isinstance(action, str)]
        if bad:
            raise TypeError(f"EnvPool.step: the actions of episodes {bad} are not str")
        return self._run("step_one", {i: (i, action, turn) for i, action in actions.items()})

    def demo_actions(self, ids: Iterable[int], rng: random.Random) -> dict[int, str]:
        """A demonstration action for each episode in `ids` (each drawn with a seed taken from
        `rng`, in the order of `ids`, so the same rng state gives the same actions)."""
        if not self.can_demonstrate:
            raise ConfigError(f"{self.label} has no demo_action(rng) method, which the supervised warm start on "
                              "environment play needs (it imitates the actions demo_action returns); add one, or "
                              "turn the warm start off")
        ids = list(ids)
        self._check_ids(ids)
        return self._run("demo_one", {i: (i, rng.getrandbits(64)) for i in ids})

    def close(self) -> None:
        """Stop the worker processes (if any). Idempotent."""
        for shard in self.shards:
            shard.close()
        self._failed, self._closed = "the pool is closed", True

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_ids(self, ids: Iterable[int]) -> None:
        if self._failed is not None:
            raise EnvError(f"{self.label}: the episodes cannot go on ({self._failed})")
        unknown = sorted(i for i in ids if not (isinstance(i, int) and 0 <= i < self.size))
        if unknown:
            raise ValueError(f"EnvPool: no episodes {unknown}; the last reset started episodes 0..{self.size - 1}")

    def _run(self, method: str, calls: dict[int, tuple]) -> dict[int, Any]:
        """{episode id: the result of method(*calls[id])}, each shard running its episodes' calls."""
        count = len(self.shards)
        by_shard = [[calls[i] for i in sorted(calls) if i % count == s] for s in range(count)]
        results = self._on_shards(method, by_shard)
        merged = {call[0]: result for shard_calls, shard_results in zip(by_shard, results)
                  for call, result in zip(shard_calls, shard_results)}
        return dict(sorted(merged.items()))

    def _on_shards(self, method: str, by_shard: list[list[tuple]]) -> list[list[Any]]:
        """Shard s runs method(*call) for each call in by_shard[s], all shards at once."""
        try:
            return _in_parallel([(shard.run, (method, calls)) for shard, calls in zip(self.shards, by_shard)])
        except EnvError as error:
            self._failed = f"an episode failed: {str(error).splitlines()[0]}"
            raise
        except BaseException:  # Ctrl-C while workers step: stop them now, not at their deadlines
            self.close()
            raise


class LocalShard:
    """Episodes in this process (built-in environments)."""

    def __init__(self, episodes: Episodes):
        self.episodes = episodes

    def run(self, method: str, calls: list[tuple]) -> list[Any]:
        return [getattr(self.episodes, method)(*call) for call in calls]

    def close(self) -> None:
        self.episodes.clear()


class ProcessShard:
    """Episodes in a worker process (a user's class); every call has a deadline."""

    def __init__(self, path: str, name: str, kwargs: dict[str, Any], timeout_s: float):
        self.path, self.name, self.timeout_s = path, name, float(timeout_s)
        self.label = f"environment class {name!r} ({path})"
        self.process = UserCodeProcess(host_user_env, (path, name, dict(kwargs)), name=self.label,
                                       startup_timeout_s=STARTUP_TIMEOUT_S)

    def start(self) -> tuple[str, bool]:
        """Start the worker: import and check the class; (label, can demonstrate), or ConfigError."""
        try:
            self.process.start()
            self.label, can_demonstrate = self.process.call("describe", timeout_s=STARTUP_TIMEOUT_S)
        except DeadlineExceeded:
            raise ConfigError(f"env.path: importing {self.path} and building environment class {self.name!r} did not "
                              f"finish within {STARTUP_TIMEOUT_S:g} s; its worker process was killed") from None
        except UserCodeError as error:  # it crashed the worker at import (a C extension), or exited oddly
            raise ConfigError(f"env.path: cannot import {self.path} (for environment class {self.name!r}): {error}") from None
        return self.label, can_demonstrate

    def run(self, method: str, calls: list[tuple]) -> list[Any]:
        """method(*call) for each call, in the worker, back to back; EnvError for any failure."""
        results: list[Any] = []
        if not calls:
            return results
        try:
            stream = self.process.call_each(method, calls, timeout_s=self.timeout_s)
            try:
                for result in stream:
                    results.append(result)
            finally:
                stream.close()
        except EnvError:
            raise
        except UserCodeError as error:
            raise self._failure(error, _what(method, calls[len(results)])) from None
        return results

    def _failure(self, error: UserCodeError, what: str) -> EnvError:
        if isinstance(error, DeadlineExceeded):
            return EnvError(f"{self.label}: {what} did not return within env.timeout_s = {self.timeout_s:g} s; its "
                            "worker process was killed (raise env.timeout_s if the environment needs longer)")
        if isinstance(error, ProcessDied):
            return EnvError(f"{self.label}: the worker process died during {what}: {error}")
        details = f"\n{error.details}" if isinstance(error, UserCodeFailed) and error.details else ""
        return EnvError(f"{self.label}: {what} failed: {error}{details}")

    def close(self) -> None:
        self.process.close()


def _what(method: str, call: tuple) -> str:
    """'step of episode 3 at turn 2': the call a failure happened in."""
    if method == "step_one":
        return f"step of episode {call[0]} at turn {call[2]}"
    if method == "reset_one":
        return f"reset of episode {call[0]}"
    if method == "demo_one":
        return f"demo_action of episode {call[0]}"
    return "dropping the previous episodes"


def _in_parallel(jobs: list[tuple[Any, tuple]]) -> list[Any]:
    """[fn(*args) for fn, args in jobs], run at the same time when there are several; every
    job finishes (each has its own deadline), then the first failure, in job order, is raised."""
    if len(jobs) == 1:
        fn, args = jobs[0]
        return [fn(*args)]
    executor = ThreadPoolExecutor(max_workers=len(jobs))
    try:
        futures = [executor.submit(fn, *args) for fn, args in jobs]
        errors = [future.exception() for future in futures]
    finally:
        executor.shutdown(wait=False)  # after a Ctrl-C, not a wait for calls still running: the pool kills them
    for error in errors:
        if error is not None:
            raise error
    return [future.result() for future in futures]
