"""One arm per process: the driver sends commands through a pipe and the worker answers.

A separate process per arm keeps each arm's global torch state (thread count, flush-to-zero,
RNG, allocator) its own, and lets the driver interleave arms: while one arm runs its steps the
others wait in `recv`, idle. Processes are spawned (not forked), so a worker starts from a
clean interpreter.

Protocol: a worker imports its arm's module as soon as it starts (TRL takes seconds to import),
may then be asked ("make_model", (dir, size, seed)) to write the initial checkpoint, and waits
for ("build", (settings,)), answered ("ok", {"threads": ..., "memory_kind": ..., "device_name": ...})
once the arm is built. Each later (command, args) with command in `COMMANDS` is answered
("ok", result) or ("error", traceback); ("close", ()) ends the worker.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import platform
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from rlhf_harness.bench.settings import BenchSettings

ARMS = {
    "rlhf": "rlhf_harness.bench.arm_rlhf:RlhfArm",
    "trl": "rlhf_harness.bench.arm_trl:TrlArm",
    "floor": "rlhf_harness.bench.arm_floor:FloorArm",
    "vllm": "rlhf_harness.bench.arm_rlhf:vllm_arm",
}
"""Arm name -> its class (or a function that builds it), imported only in the worker that runs it."""
COMMANDS = ("run", "accuracy")
"""Methods of an arm the driver may call: run(steps) -> [StepRecord dict], accuracy(rows, max_new_tokens) -> float."""


def prepare_environment() -> None:
    """Set, in the driver, what the spawned workers inherit: no model hub (everything is
    local), no tokenizer fork warnings, and no launcher variables. Every arm is one process of
    its own: RANK & co. inherited from a caller (e.g. a test process that ran DeepSpeed) would
    make accelerate join that caller's process group."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(name, None)


def arm_class(name: str) -> type:
    if name not in ARMS:
        raise ValueError(f"unknown arm {name!r}; valid arms: {', '.join(ARMS)}")
    module_name, class_name = ARMS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def serve(conn, name: str) -> None:
    """The worker's main function: import, build the arm, answer commands until "close"."""
    arm = None
    try:
        cls = arm_class(name)
        arm = build_when_asked(conn, cls)
        while arm is not None:
            command, args = conn.recv()
            if command == "close":
                break
            conn.send(("ok", getattr(arm, command)(*args)))
    except EOFError:  # the driver went away
        pass
    except Exception:  # noqa: BLE001 - the driver re-raises it with the arm's name
        conn.send(("error", traceback.format_exc()))
    finally:
        if arm is not None:
            arm.close()
        conn.close()


def build_when_asked(conn, cls: type):
    """Answer "make_model" (the driver has one worker write the initial checkpoint, so that it
    never imports torch itself) until "build"; returns the built arm, or None on "close"."""
    # imported here, in the worker: the driver imports this module too and must stay light
    import torch

    from rlhf_harness.bench.common import build_initial_model

    while True:
        command, args = conn.recv()
        if command == "close":  # the driver failed before it built the arms
            return None
        if command == "make_model":
            conn.send(("ok", build_initial_model(*args)))
        elif command == "build":
            arm = cls(*args)
            on_gpu = arm.peaks.kind == "cuda_allocated"
            device_name = torch.cuda.get_device_name() if on_gpu else (platform.processor() or platform.machine())
            conn.send(("ok", {"threads": torch.get_num_threads(), "memory_kind": arm.peaks.kind, "device_name": device_name}))
            return arm
        else:
            raise RuntimeError(f"expected 'make_model', 'build' or 'close' before the arm is built, got {command!r}")


class ArmProcess:
    """The driver's handle on one arm's worker process."""

    def __init__(self, name: str):
        if name not in ARMS:
            raise ValueError(f"unknown arm {name!r}; valid arms: {', '.join(ARMS)}")
        context = multiprocessing.get_context("spawn")
        self.name = name
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=serve, args=(child_conn, name), name=f"bench-{name}")
        self.process.start()
        child_conn.close()

    def make_model(self, out_dir: str, size: str | dict, seed: int) -> int:
        """Have this worker write the initial checkpoint (see `common.build_initial_model`);
        returns its number of parameters. Only before `build`."""
        self.conn.send(("make_model", (out_dir, size, seed)))
        return self.receive()

    def build(self, settings: BenchSettings) -> None:
        """Ask the worker to build its arm (answered by `receive`)."""
        self.conn.send(("build", (settings,)))

    def call(self, command: str, *args):
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; valid: {', '.join(COMMANDS)}")
        self.conn.send((command, args))
        return self.receive()

    def receive(self):
        while not self.conn.poll(1.0):
            if not self.process.is_alive():
                raise RuntimeError(f"the {self.name} worker died (exit code {self.process.exitcode})")
        status, value = self.conn.recv()
        if status == "error":
            raise RuntimeError(f"the {self.name} arm failed:\n{value}")
        return value

    def request_close(self) -> None:
        """Ask the worker to stop (without waiting: workers wind down in parallel)."""
        if self.process.is_alive():
            try:
                self.conn.send(("close", ()))
            except OSError:  # the worker already closed its end
                pass

    def close(self) -> None:
        """Ask the worker to stop; terminate it if it does not within two minutes."""
        self.request_close()
        self.process.join(timeout=120)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self.conn.close()


@contextmanager
def arm_processes(arms: list[str]) -> Iterator[dict[str, ArmProcess]]:
    """Start one worker per arm (they begin importing at once); close them all on exit."""
    processes: dict[str, ArmProcess] = {}
    try:
        for name in arms:
            processes[name] = ArmProcess(name)
        yield processes
    finally:
        for process in processes.values():
            process.request_close()
        for process in processes.values():
            process.close()


def build_arms(processes: dict[str, ArmProcess], settings: BenchSettings) -> dict[str, dict]:
    """Build every arm from `settings`, all at once; returns what each worker reports."""
    for process in processes.values():
        process.build(settings)
    return {name: process.receive() for name, process in processes.items()}
