"""The record of each kill and the verdict over all of them (printed and written as JSON by
`scripts/kill_resume.py`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rlhf_harness.faults.kill_plan import KillPlan

COMPARED = ("metrics.jsonl", "samples.jsonl", "sft_metrics.jsonl")
"""Run files whose records must equal the reference's (wall-clock keys aside)."""


@dataclass
class Kill:
    """What one kill hit and left behind."""

    index: int
    plan: KillPlan
    at_s: float
    """Seconds from launch to the kill."""
    resume_step: int | None
    """The checkpoint step the next launch resumes from (None: it starts afresh)."""
    last_logged: int | None
    """The last step in metrics.jsonl when the kill landed."""
    lost_steps: int
    """last_logged - resume_step: logged steps the next launch must redo."""
    save_phase: str | None
    """Where the kill cut a checkpoint save ('write', 'pointer', 'prune'), or None."""
    unreadable: dict[str, str]
    leftovers: list[str]
    partial_line: bool
    """metrics.jsonl ended in a partial line."""
    survivors: list[int]
    """Processes of the killed group still alive after the kill."""
    resumed_from: int | None
    """The step the killed launch said it resumed after (None: it did not get that far)."""
    survivor_commands: list[str] = field(default_factory=list)
    """The command lines of `survivors` (what was left behind)."""
    ray_agents: list[int] = field(default_factory=list)
    """Ray's own per-node agents (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) still alive
    after the kill: Ray leaks them when its raylet dies unexpectedly (ray-project/ray#39092);
    reported, killed, and not counted as survivors of ours."""


def describe(kill: Kill) -> str:
    """One table row."""
    plan = kill.plan
    target = f"{plan.kind} {plan.target}" if plan.kind != "startup" else "startup"
    resumed = "-" if kill.resumed_from is None else str(kill.resumed_from)
    return (f"kill {kill.index:3d}  {target:<15} +{plan.delay_s:6.3f}s  at {kill.at_s:6.2f}s  resumed@{resumed:>3}  "
            f"logged {kill.last_logged if kill.last_logged is not None else '-':>3}  "
            f"checkpoint {kill.resume_step if kill.resume_step is not None else '-':>3}  lost {kill.lost_steps}  "
            f"save: {kill.save_phase or '-':<7}  {'UNREADABLE ' + str(kill.unreadable) if kill.unreadable else ''}"
            f"{' SURVIVORS ' + str(kill.survivors) if kill.survivors else ''}"
            f"{' ray agents left ' + str(kill.ray_agents) if kill.ray_agents else ''}")


def resume_mismatches(kills: list[Kill], final_resumed_from: int | None) -> list[str]:
    """Launches that said they resumed from another checkpoint than the one the kill before
    them left as `latest` (launch k+1 follows kill k)."""
    said = [kill.resumed_from for kill in kills[1:]] + [final_resumed_from]
    problems = []
    for kill, resumed_from in zip(kills, said):
        if resumed_from is not None and resumed_from != kill.resume_step:
            problems.append(f"after kill {kill.index} the run resumed from step {resumed_from}, not {kill.resume_step}")
    return problems


def summarize(requested: int, save_every: int, kills: list[Kill], failure: str | None, comparison: dict,
              final_resumed_from: int | None, seconds: dict) -> dict:
    """The verdict: counts, the worst loss, and `ok` when every check held."""
    mismatches = resume_mismatches(kills, final_resumed_from)
    max_lost = max((kill.lost_steps for kill in kills), default=0)
    unreadable = {f"kill {kill.index}: {name}": problem for kill in kills for name, problem in kill.unreadable.items()}
    survived = [kill.index for kill in kills if kill.survivors]
    compared = ("groups",) if "groups" in comparison else COMPARED  # an asynchronous run's history is checked, not compared
    files_equal = all(comparison.get(name, {"equal": True})["equal"] for name in compared) and bool(comparison)
    checks = {
        "all_kills_done": len(kills) == requested,
        "every_resume_succeeded": failure is None,
        "resumed_from_latest": not mismatches,
        "no_unreadable_checkpoint": not unreadable,
        "no_surviving_process": not survived,
        "lost_at_most_save_every": max_lost <= save_every,
        "final_records_equal": files_equal,
    }
    return {
        "ok": all(checks.values()), "checks": checks, "failure": failure, "kills": len(kills),
        "kinds": dict(Counter(kill.plan.kind for kill in kills)),
        "during_checkpoint_saves": sum(kill.save_phase is not None for kill in kills),
        "save_phases": dict(Counter(kill.save_phase for kill in kills if kill.save_phase)),
        "max_lost_steps": max_lost, "partial_lines": sum(kill.partial_line for kill in kills),
        "unreadable": unreadable, "resume_mismatches": mismatches, "seconds": seconds,
        "ray_agents_left": sum(len(kill.ray_agents) for kill in kills),
    }
