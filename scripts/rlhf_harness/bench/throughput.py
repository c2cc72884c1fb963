"""Seconds per step and tokens per second of each arm: warm-up, then interleaved rounds.

    (1) build every arm in its worker (not timed) and wait until all are ready
    (2) warm-up: each arm runs `warmup` steps, discarded
    (3) `rounds` rounds; in each, every arm runs `steps_per_round` steps, the arm that goes
        first rotating from round to round, so slow drifts of the machine (other load,
        thermal) spread over all arms instead of biasing one
    (4) medians over the timed steps of each arm (and the fastest step, the least disturbed
        one on a shared machine), the ratios between arms (of the medians), and the peak
        memory of each phase (the largest over the timed steps: a peak, not a typical value)
"""

from __future__ import annotations

import statistics

from rlhf_harness.bench.settings import BenchSettings
from rlhf_harness.bench.worker import ArmProcess, build_arms


def interleaved_steps(processes: dict[str, ArmProcess], warmup: int, rounds: int, steps_per_round: int) -> dict[str, list[dict]]:
    """Steps 2-3 of the module docstring; returns each arm's timed `StepRecord` dicts."""
    names = list(processes)
    # 2. warm-up
    for name in names:
        if warmup:
            processes[name].call("run", warmup)
    # 3. interleaved rounds
    records: dict[str, list[dict]] = {name: [] for name in names}
    for round_index in range(rounds):
        first = round_index % len(names)
        for name in names[first:] + names[:first]:
            records[name].extend(processes[name].call("run", steps_per_round))
    return records


def summarise_arm(records: list[dict]) -> dict:
    """Medians of one arm's timed steps (step 4); `steps` keeps every record."""
    seconds = [r["seconds"] for r in records]
    generate = [r["generate_seconds"] for r in records if r["generate_seconds"] is not None]
    update = [r["update_seconds"] for r in records if r.get("update_seconds") is not None]
    phase_names = sorted({name for r in records for name in r["phases"]})
    memory_phases = sorted({name for r in records for name in r.get("peak_memory_mib", {})})
    return {
        "seconds_per_step": statistics.median(seconds),
        # the fastest step: on a machine shared with other work, the least disturbed one
        "best_seconds_per_step": min(seconds),
        "tokens_per_second": statistics.median(r["tokens"] / r["seconds"] for r in records),
        "tokens_per_step": statistics.median(r["tokens"] for r in records),
        "generate_seconds": statistics.median(generate) if generate else None,
        "generate_share": statistics.median(r["generate_seconds"] / r["seconds"] for r in records) if generate else None,
        "update_seconds": statistics.median(update) if update else None,
        "reward_mean": statistics.fmean(r["reward_mean"] for r in records),
        "response_length_mean": statistics.fmean(r["response_length_mean"] for r in records),
        "phases": {name: statistics.median(r["phases"][name] for r in records if name in r["phases"]) for name in phase_names},
        "peak_memory_mib": {name: max(r["peak_memory_mib"][name] for r in records if name in r.get("peak_memory_mib", {})) for name in memory_phases},
        "steps": records,
    }


def arm_ratios(summary: dict[str, dict]) -> dict[str, float]:
    """rlhf/TRL as a throughput ratio (> 1: rlhf processes more tokens per second) and
    rlhf/floor, TRL/floor as step-time ratios (>= 1 expected: how far above the floor), of the
    medians; `*_best_step_time`: the same of the fastest steps."""
    ratios = {}
    pairs = [("rlhf", "trl"), ("rlhf", "floor"), ("trl", "floor"), ("vllm", "trl"), ("vllm", "floor")]
    for name, other in pairs:
        if name in summary and other in summary:
            arm, base = summary[name], summary[other]
            ratios[f"{name}_over_{other}_throughput"] = arm["tokens_per_second"] / base["tokens_per_second"]
            ratios[f"{name}_over_{other}_step_time"] = arm["seconds_per_step"] / base["seconds_per_step"]
            ratios[f"{name}_over_{other}_best_step_time"] = arm["best_seconds_per_step"] / base["best_seconds_per_step"]
    return ratios


def run_throughput(processes: dict[str, ArmProcess], settings: BenchSettings, warmup: int, rounds: int, steps_per_round: int) -> dict:
    """Steps 1-4 of the module docstring on started workers: {"workers", "arms", "ratios"}."""
    # 1. build the arms
    workers = build_arms(processes, settings)
    # 2-3. warm-up, interleaved rounds
    records = interleaved_steps(processes, warmup, rounds, steps_per_round)
    # 4. medians and ratios
    summary = {name: summarise_arm(arm_records) for name, arm_records in records.items()}
    return {"workers": workers, "arms": summary, "ratios": arm_ratios(summary)}
