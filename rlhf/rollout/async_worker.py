"""The rollout process of an asynchronous run (the trainer's handle on it is
:mod:`rlhf.rollout.rollout_process`).

The process holds its own rollout engine (its own copy of the policy) and loops:

    (1) take the group requests that arrived; with none pending, wait for one (idle time)
    (2) load the newest weights the trainer posted (:mod:`rlhf.rollout.weight_mailbox`)
    (3) take the oldest pending requests whose earliest allowed version it now holds (or that
        the trainer is waiting for), at most `generate_groups`; none: wait for newer weights
        (idle time; the staleness bound)
    (4) generate them in one call, every token tagged with its policy version (with partial
        rollouts a call takes new weights mid-way: :mod:`rlhf.rollout.versioned`), and send
        each group back; in a multi-turn run a call plays the groups' episodes to their end
        against the process's own environments (:mod:`rlhf.rollout.async_episodes`)

A checkpoint asks for a snapshot (`RolloutProcess.snapshot`): the process pauses its generation
after the current decoding step, sends every row's response so far, and goes on; a resumed run
requests those groups again with their responses begun (`GroupRequest.prefixes`).

It ignores Ctrl-C (the trainer decides when to stop and sends `STOP`), dies with the trainer
(PR_SET_PDEATHSIG on Linux, and a check of the parent between calls elsewhere), and reports
any exception as a message the trainer raises, so a failing rollout stops the run with its
traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import pickle
import queue
import signal
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch

from rlhf.data.batch import Batch
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.versioned import VersionedGeneration, generate_with_versions
from rlhf.rollout.weight_mailbox import WeightMailbox

STOP = "stop"


@dataclass
class GroupRequest:
    """One prompt to sample n responses (or play n episodes) for."""

    group_id: int
    position: int
    """Its place in the stream of requests (groups are trained in this order)."""
    earliest: int
    """The oldest policy version that may start it (:func:`rlhf.rollout.staleness.earliest_version`)."""
    prompts: Batch | None
    """[n, P] the prompt repeated n times, with its row's fields (None in a multi-turn run)."""
    prefixes: list | None = None
    """Per row, a response begun before a checkpoint (`RowState.as_dict`), to go on from."""
    rows: list[dict] | None = None
    """Multi-turn: the dataset row of each of the n episodes (the environments start from it)."""

    @property
    def size(self) -> int:
        """n: the responses or episodes of the group."""
        return len(self.rows) if self.rows is not None else len(self.prompts)


@dataclass
class GroupResult:
    """A finished group: the request's batch with the response fields and `token_versions`."""

    group_id: int
    batch: Batch
    baseline: Batch | None = None
    """ReMax: one greedy response to the group's prompt, sampled with the same weights."""


@dataclass
class WorkerSpec:
    """What the rollout process builds its engine from and how it samples."""

    config: Any
    architecture: Any
    """The policy's Hugging Face config: the process builds the model from it, then loads the
    trainer's weights (an engine that loads its own model from `model_path` ignores it)."""
    generation_config: Any
    dtype: torch.dtype
    tokenizer: Any
    model_path: str
    sampling: SamplingParams
    partial: bool
    pausable: bool
    """The engine's generate can pause between decoding steps (takes `interrupt`: HF and vLLM)."""
    with_baseline: bool
    """Also generate one greedy response per group (ReMax's baseline)."""
    episodes: bool
    """Multi-turn: groups are episodes against `config.env`'s environments, built in the process."""
    generate_groups: int
    threads: int
    seed: int
    cpus: list[int]
    """CPU ids to run on (empty: those of the trainer)."""
    trainer_pid: int | None
    """The trainer's process id: when this process's parent is another, the trainer is gone
    (None: no such check, in a Ray worker)."""


class Control:
    """Numbers the two processes share: `clock` (seconds the rollout process waited, and
    generated), `wanted` (the stream position of a group the trainer waits for) and
    `snapshots` (how many snapshots the trainer asked for; the process answers each once)."""

    def __init__(self, context):
        self.clock = context.Array("d", 2)
        self.wanted = context.Value("q", -1, lock=False)
        self.snapshots = context.Value("q", 0, lock=False)
        self.answered = 0  # the rollout process's own count

    def snapshot_asked(self) -> bool:
        return int(self.snapshots.value) > self.answered

    def answer(self, results, states: dict) -> None:
        """Send the responses begun, {group id: [row state, ...]}, for the newest request."""
        self.answered = int(self.snapshots.value)
        results.put(("snapshot", self.answered, states))


def worker_main(spec: WorkerSpec, requests, results, mailbox: WeightMailbox, control: Control) -> None:
    """The rollout process: build its engine, then :func:`serve` until `STOP`."""
    _die_with_parent()
    if os.getppid() != spec.trainer_pid:  # the trainer died before PR_SET_PDEATHSIG was set (while this process started)
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if spec.cpus:
        os.sched_setaffinity(0, spec.cpus)
    torch.set_num_threads(spec.threads)
    torch.manual_seed(spec.seed)
    try:
        engine = _build_engine(spec, mailbox)
    except BaseException as error:  # noqa: BLE001 -- everything goes back to the trainer, which raises it
        results.put(error_message(error))
        return
    if serve(engine, spec, requests, results, mailbox, control):
        results.cancel_join_thread()  # results the trainer will not read must not hold up the exit


def serve(engine, spec: WorkerSpec, requests, results, mailbox, control: Control, lock=None) -> bool:
    """Steps (1)-(4) of the module docstring with `engine`, until `STOP` (True) or an exception,
    which goes to the trainer as a message (False). `requests` and `results` are queues
    (between processes, or between the threads of a Ray worker: :mod:`rlhf.distributed.rollout_service`);
    `lock`, held from step (2) to the end of step (4), lets another thread of the process use
    the engine between calls."""
    lock = lock or contextlib.nullcontext()
    player = None
    try:
        if spec.episodes:
            from rlhf.rollout.async_episodes import EpisodePlayer

            player = EpisodePlayer(spec.config, spec.tokenizer, spec.sampling)
        held = mailbox.fetch(engine, -1)
        pending: deque[GroupRequest] = deque()
        while True:
            # 1. requests (wait when there is nothing to do)
            waited = time.perf_counter()
            if not _take_requests(requests, pending, block=not pending, control=control, results=results, trainer_pid=spec.trainer_pid):
                return True
            with lock:
                # 2. the newest weights
                held = mailbox.fetch(engine, held)
                # 3. requests the held version may start
                ready = take_startable(pending, held, spec.generate_groups, int(control.wanted.value))
                if not ready:
                    _wait_for_version(mailbox, held)
                if control.snapshot_asked():  # nothing is being generated
                    control.answer(results, {})
                control.clock[0] += time.perf_counter() - waited
                if not ready:
                    continue
                # 4. generate, send each group back
                started = time.perf_counter()
                held = _generate(engine, spec, mailbox, ready, results, held, control, player)
                control.clock[1] += time.perf_counter() - started
    except BaseException as error:  # noqa: BLE001 -- everything goes back to the trainer, which raises it
        results.put(error_message(error))
        return False
    finally:
        if player is not None:
            player.close()


def error_message(error: BaseException) -> tuple[str, str]:
    """The message that tells the trainer the rollout side failed: the exception on the first
    line, then its traceback."""
    return ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")


def _build_engine(spec: WorkerSpec, mailbox: WeightMailbox):
    """The process's own rollout engine: a model of the policy's architecture that every
    weight in the mailbox covers (a parameter left at its random initial value would corrupt
    every sample silently), or an engine that loads its own."""
    from transformers import AutoModelForCausalLM

    from rlhf.rollout.registry import build_rollout, rollout_engine

    module = None
    if rollout_engine(spec.config.rollout.engine).needs_module:
        module = AutoModelForCausalLM.from_config(spec.architecture, dtype=spec.dtype,
                                                  trust_remote_code=spec.config.model.trust_remote_code)
        module.generation_config = spec.generation_config
        missing = sorted(set(dict(module.named_parameters())) - set(mailbox.tensors))
        if missing:
            raise RuntimeError(f"the trainer's weights do not cover the rollout model's parameters {missing[:5]}"
                               f"{' ...' if len(missing) > 5 else ''}; the rollout process cannot generate with this policy")
    return build_rollout(spec.config, module, spec.tokenizer, spec.model_path, share_module=True)


def _take_requests(requests, pending: deque, block: bool, control: Control, results, trainer_pid: int | None) -> bool:
    """Move arrived requests to `pending` (waiting for one when `block`, answering snapshots
    meanwhile); False on STOP."""
    while True:
        try:
            message = requests.get(timeout=0.05) if block else requests.get_nowait()
        except queue.Empty:
            if block and trainer_pid is not None and os.getppid() != trainer_pid:  # the trainer is gone (no PR_SET_PDEATHSIG)
                return False
            if block and control.snapshot_asked():
                control.answer(results, {})
            if block:
                continue
            return True
        if message == STOP:
            return False
        ordered = sorted([*pending, *loads(message)], key=lambda request: request.position)  # the order they are trained in
        pending.clear()
        pending.extend(ordered)
        block = False


def take_startable(pending: deque, held: int, limit: int, wanted: int = -1) -> list:
    """Pop the oldest pending requests that version `held` may start (their `earliest` ≤ held),
    or that the trainer is waiting for (position ≤ `wanted`), at most `limit`, stopping at the
    first that must wait: groups start in request order, the order the trainer takes them in.

    `earliest` assumes each update trains one batch of groups; an update that takes more (DAPO's
    dynamic sampling drops uninformative groups) reaches a group sooner, and then waits for it:
    the held version is then the trainer's own (or within `sync_every` of it), so starting it
    keeps the bound."""
    ready = []
    while pending and len(ready) < limit and (pending[0].earliest <= held or pending[0].position <= wanted):
        ready.append(pending.popleft())
    return ready


def _wait_for_version(mailbox: WeightMailbox, held: int, seconds: float = 0.05) -> None:
    """Poll for weights newer than `held`, for at most `seconds`."""
    deadline = time.perf_counter() + seconds
    while mailbox.version <= held and time.perf_counter() < deadline:
        time.sleep(0.002)


def _generate(engine, spec: WorkerSpec, mailbox: WeightMailbox, ready: list[GroupRequest], results, held: int, control: Control,
              player=None) -> int:
    """Generate the ready groups in one call (play their episodes, with `player`) and send each
    back; returns the version held after."""
    if player is not None:  # episodes are played with one version each, start to end
        held = mailbox.fetch(engine, held)
        rows = [row for request in ready for row in request.rows]
        out = player.play(engine, rows, [request.group_id for request in ready for _ in request.rows], held)
    elif not spec.pausable:  # the engine generates a call in one piece: snapshots wait for its end
        prompts = Batch.concat([request.prompts for request in ready])
        held = mailbox.fetch(engine, held)
        out = generate_with_versions(engine, prompts, spec.sampling, refresh=lambda: held)
    else:
        out, held = _pausable(engine, spec, mailbox, ready, results, held, control)
    baselines = None
    if spec.with_baseline:  # with the weights the call ended with
        greedy = SamplingParams(max_new_tokens=spec.sampling.max_new_tokens, greedy=True)
        baselines = engine.generate(Batch.concat([request.prompts.select([0]) for request in ready]), greedy)
    groups, start = [], 0
    for index, request in enumerate(ready):
        part = out.select(range(start, start + request.size))
        baseline = None if baselines is None else baselines.select([index])
        groups.append(GroupResult(request.group_id, Batch(part.tensors, part.non_tensors, {}),
                                  None if baseline is None else Batch(baseline.tensors, baseline.non_tensors, {})))
        start += request.size
    results.put(dumps(groups))
    return held


def _pausable(engine, spec: WorkerSpec, mailbox: WeightMailbox, ready: list[GroupRequest], results, held: int,
              control: Control) -> tuple[Batch, int]:
    """One call that pauses for snapshots (answered at once, then it goes on) and, with partial
    rollouts, for new weights (taken, then it goes on): :mod:`rlhf.rollout.versioned`."""
    prefixes = [prefix for request in ready for prefix in (request.prefixes or [None] * request.size)]
    generation = VersionedGeneration(engine, Batch.concat([request.prompts for request in ready]), spec.sampling, prefixes)
    held = mailbox.fetch(engine, held)
    while not generation.run(held, lambda: control.snapshot_asked() or (spec.partial and mailbox.version > held)):
        if control.snapshot_asked():
            states, start = generation.states(), 0
            begun = {}
            for request in ready:
                begun[request.group_id] = states[start:start + request.size]
                start += request.size
            control.answer(results, begun)
        if spec.partial:
            held = mailbox.fetch(engine, held)
    return generation.result(), held


def dumps(items: list) -> bytes:
    """Requests or results as one message. Tensors travel as numpy arrays: 20x faster to
    pickle than torch tensors at these sizes, and by value (torch's queue reductions would hold
    a file descriptor open per tensor for as long as it lives)."""
    return pickle.dumps([_with_batch(item, lambda batch: ({k: v.numpy() for k, v in batch.tensors.items()}, batch.non_tensors))
                         for item in items], protocol=5)


def loads(message: bytes) -> list:
    """The items of :func:`dumps`."""
    return [_with_batch(item, lambda wire: Batch({k: torch.from_numpy(v) for k, v in wire[0].items()}, wire[1], {}))
            for item in pickle.loads(message)]


def _with_batch(item, convert):
    """`item` (a GroupRequest or GroupResult) with its batch converted."""
    if isinstance(item, GroupRequest):
        return dataclasses.replace(item, prompts=None if item.prompts is None else convert(item.prompts))
    return dataclasses.replace(item, batch=convert(item.batch), baseline=None if item.baseline is None else convert(item.baseline))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a killed trainer leaves no rollout behind)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
