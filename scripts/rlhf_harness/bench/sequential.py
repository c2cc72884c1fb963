"""The GPU benchmark's schedule: the arms one after another, each alone on the machine.

    (1) the first arm's worker writes the initial checkpoint every arm loads
    (2) for each arm in turn: start its worker, build the arm, warm-up steps, timed steps
        (`throughput.run_throughput` with one arm and one round), stop the worker, so its
        memory is free again before the next arm starts
    (3) the ratios between the arms' medians

On one GPU, arms running at the same time would share its memory and its queues; one at a
time, each arm's time and peak memory are its own (bench_vs_trl interleaves its arms instead,
to spread the drifts of a shared CPU machine over all of them). An arm that fails is recorded
with its error and the others still run.

Which arms can run at all is checked first (:func:`unavailable_reason`): the `vllm` arm needs
an importable vLLM, and is reported as skipped, with the reason, where there is none.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from rlhf_harness.bench.settings import BenchSettings
from rlhf_harness.bench.throughput import arm_ratios, run_throughput
from rlhf_harness.bench.worker import arm_processes

NEEDS_IMPORT = {"vllm": "vllm"}
"""Arm -> the module it cannot run without."""


def unavailable_reason(arm: str, needs: dict[str, str] = NEEDS_IMPORT, timeout_s: float = 600.0) -> str | None:
    """Why `arm` cannot run here (`needs`: arm -> module), or None when it can. The import is
    tried in a fresh interpreter: a package that is installed but does not load (a build for
    another torch, a missing driver library) counts as missing, and the driver stays free of it."""
    module = needs.get(arm)
    if module is None:
        return None
    if importlib.util.find_spec(module) is None:
        return f"{module} is not installed"
    try:
        tried = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"import {module} did not finish in {timeout_s:.0f} s"
    if tried.returncode != 0:
        last_line = (tried.stderr.strip().splitlines() or [f"exit status {tried.returncode}"])[-1]
        return f"import {module} failed: {last_line}"
    return None


def error_summary(error: Exception, lines: int = 25) -> str:
    """The last `lines` lines of an arm's failure (the worker's traceback ends with its cause)."""
    return "\n".join(str(error).rstrip().splitlines()[-lines:])


def run_one_at_a_time(arms: list[str], settings: BenchSettings, model: dict, seed: int, warmup: int, steps: int) -> dict:
    """Steps 1-3 of the module docstring; `model` holds `build_tiny_model` arguments.
    Returns {"parameters", "workers", "arms", "failed", "ratios"}: `arms` as
    `throughput.summarise_arm` gives them, `failed` arm -> the end of its error; `parameters` is
    None when no arm was given (no checkpoint is written then)."""
    parameters: int | None = None
    workers: dict[str, dict] = {}
    summary: dict[str, dict] = {}
    failed: dict[str, str] = {}
    for name in arms:
        print(f"arm {name}: starting", flush=True)
        with arm_processes([name]) as processes:
            if parameters is None:  # 1. the checkpoint; nothing can run without it
                parameters = processes[name].make_model(settings.model_dir, model, seed)
            try:  # 2. one arm alone
                result = run_throughput(processes, settings, warmup, rounds=1, steps_per_round=steps)
            except RuntimeError as error:
                failed[name] = error_summary(error)
                print(f"arm {name}: FAILED\n{failed[name]}", flush=True)
                continue
        workers.update(result["workers"])
        summary.update(result["arms"])
        print(f"arm {name}: {summary[name]['seconds_per_step']:.3f} s/step", flush=True)
    # 3. ratios
    return {"parameters": parameters, "workers": workers, "arms": summary, "failed": failed, "ratios": arm_ratios(summary)}
