"""The verdict of `rlhf plan`: peak memory per device, whether it fits, and what to change.

:func:`summarize` is pure (a :class:`~rlhf.plan.layout.Plan` in, a JSON-ready dict out);
:func:`print_report` renders that dict as a rich table.
"""

from __future__ import annotations

from typing import Any

from rlhf.plan.layout import RESIDENT, Item, Plan
from rlhf.plan.memory import GIB

TIGHT_FRACTION = 0.9
"""Above this share of device memory a plan that fits is flagged as tight (no room for the
CUDA context, fragmentation and temporary buffers)."""


def phase_totals(items: list[Item]) -> dict[str, float]:
    """Device bytes per phase (resident and each transient phase)."""
    totals: dict[str, float] = {}
    for item in items:
        totals[item.phase] = totals.get(item.phase, 0.0) + item.device_bytes
    return totals


def summarize(plan: Plan) -> dict[str, Any]:
    """Peak per device (resident + the largest phase), the verdict, the biggest items counted
    in the peak and suggested fixes, as a JSON-ready dict with sizes in GiB."""
    totals = phase_totals(plan.items)
    resident = totals.pop(RESIDENT, 0.0)
    peak_phase = max(totals, key=totals.get) if totals else RESIDENT
    peak = resident + totals.get(peak_phase, 0.0)
    memory = plan.layout.device_memory_gib * GIB
    counted = [item for item in plan.items if item.phase in (RESIDENT, peak_phase)]
    biggest = sorted(counted, key=lambda item: item.device_bytes, reverse=True)[:3]
    fits = peak <= memory and not plan.blockers
    return {
        "layout": vars(plan.layout),
        "parameters": plan.parameters,
        "items": [{"name": i.name, "phase": i.phase, "device_gib": i.device_bytes / GIB, "host_gib": i.host_bytes / GIB,
                   "note": i.note} for i in plan.items],
        "resident_gib": resident / GIB,
        "phases_gib": {phase: total / GIB for phase, total in totals.items()},
        "peak_phase": peak_phase,
        "peak_gib": peak / GIB,
        "host_gib": sum(item.host_bytes for item in plan.items) / GIB,
        "device_memory_gib": plan.layout.device_memory_gib,
        "fits": fits,
        "tight": fits and peak > TIGHT_FRACTION * memory,
        "biggest": [item.name for item in biggest],
        "blockers": list(plan.blockers),
        "suggestions": [] if fits and peak <= TIGHT_FRACTION * memory else suggestions(plan, biggest),
        "assumptions": plan.notes,
    }


def suggestions(plan: Plan, biggest: list[Item]) -> list[str]:
    """Fixes aimed at the biggest items, most specific first, ending with more devices."""
    layout, fixes = plan.layout, []
    for item in biggest:
        if item.name.endswith(("optimizer state", "gradients", "weights")) and "reward model" not in item.name:
            if not layout.data_parallel and layout.devices > 1:
                fixes.append("train.engine=deepspeed with train.zero_stage=3 shards weights, gradients and optimizer state over the devices")
            elif not layout.data_parallel:
                fixes.append("train.engine=deepspeed train.zero_stage=1 train.offload_optimizer=true moves the optimizer state to host memory")
            elif layout.zero_stage < 3 and layout.devices > 1:
                fixes.append(f"raise train.zero_stage (now {layout.zero_stage}) to shard {item.name} over {layout.devices} devices")
            if layout.data_parallel and not layout.offload_optimizer and item.name.endswith("optimizer state"):
                fixes.append("train.offload_optimizer=true moves the optimizer state to host memory")
            if layout.data_parallel and layout.zero_stage >= 3 and not layout.offload_params and item.name.endswith("weights"):
                fixes.append("train.offload_params=true moves the ZeRO-3 weights to host memory")
        elif item.name.endswith(("activations", "logits")):
            role = item.name.split()[0]
            if not layout.gradient_checkpointing and item.name.endswith("activations"):
                fixes.append("train.gradient_checkpointing=true keeps one tensor per layer instead of all activations")
            fixes.append(f"lower {role}.micro_batch_size (activations and logits grow linearly with it)")
        elif item.name == "rollout KV cache":
            fixes.append("lower rollout.micro_batch_size (sequences generated at once) or max_new_tokens")
        elif item.name == "rollout engine reservation":
            fixes.append("lower rollout.vllm.gpu_memory_utilization (as far as its weights and KV cache allow), or keep "
                         "rollout.vllm.enable_sleep_mode=true so it is released while training")
        elif "reward model" in item.name:
            fixes.append("run the reward model on its own device, or a smaller reward model")
    fixes.append("use more devices (--devices N) to shard and split the batch")
    return list(dict.fromkeys(fixes))


def gib(value: float) -> str:
    """`12.3` GiB with sensible precision for small numbers."""
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def print_report(summary: dict[str, Any], recipe: str) -> None:
    """The items table, the verdict, the biggest items and suggestions, on stdout."""
    from rich.console import Console
    from rich.table import Table

    layout = summary["layout"]
    console = Console(highlight=False)
    if not console.is_terminal:  # piped output: rich would wrap the table at 80 columns
        console.width = 120
    engine = layout["engine"]
    table = Table(title=f"rlhf plan {recipe}: {layout['devices']} device(s) x {layout['device_memory_gib']:g} GiB, {engine}")
    for column, justify in (("item", "left"), ("phase", "left"), ("GiB/device", "right"), ("host GiB", "right"), ("note", "left")):
        table.add_column(column, justify=justify)
    for item in summary["items"]:
        host = gib(item["host_gib"]) if item["host_gib"] else ""
        table.add_row(item["name"], item["phase"], gib(item["device_gib"]), host, item["note"])
    console.print(table)
    print_verdict(console, summary)


def print_verdict(console: Any, summary: dict[str, Any]) -> None:
    """Parameter counts, the peak, fits or not, the biggest items, fixes and assumptions."""
    params = ", ".join(f"{name} {count / 1e6:,.1f}M" for name, count in summary["parameters"].items())
    console.print(f"parameters: {params}")
    console.print(f"peak per device: {gib(summary['peak_gib'])} GiB = resident {gib(summary['resident_gib'])} + "
                  f"{summary['peak_phase']} {gib(summary['peak_gib'] - summary['resident_gib'])} "
                  f"(of {summary['device_memory_gib']:g} GiB)")
    verdict = "fits" if summary["fits"] else "does NOT fit"
    style = "bold red" if not summary["fits"] else ("bold yellow" if summary["tight"] else "bold green")
    console.print(f"[{style}]{verdict}[/]" + (" (tight: over 90% of device memory)" if summary["tight"] else "")
                  + f"; biggest items: {', '.join(summary['biggest'])}")
    for blocker in summary["blockers"]:
        console.print(f"[bold red]cannot start:[/] {blocker}")
    for fix in summary["suggestions"]:
        console.print(f"  - {fix}")
    console.print("assumptions:", style="dim")
    for note in summary["assumptions"]:
        console.print(f"  {note}", style="dim", soft_wrap=True)
