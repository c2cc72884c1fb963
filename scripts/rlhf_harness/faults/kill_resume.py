"""Kill anywhere, resume exactly: SIGKILL a tiny training run M times at random moments
(a share of them inside checkpoint saves), resume it each time with `trainer.resume=auto`, and
check that

    every resume starts (no launch fails by itself) from the checkpoint `latest` names,
    every checkpoint left on disk loads and no kill leaves a process behind,
    at most one save interval of steps is lost per kill, and
    the final metrics.jsonl, samples.jsonl and sft_metrics.jsonl equal those of an
    uninterrupted run, wall-clock keys aside.

Steps of :func:`kill_and_resume`: (1) the reference: one uninterrupted run, timed
(2) launch the same command in another directory, kill it at the planned moment, inspect what
it left; M times (3) let the last launch run to the end (4) compare with the reference.
Every launch is `python -m rlhf.cli.main train RECIPE ...` in a session of its own.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rlhf_harness.faults.kill_plan import (
    KillPlan,
    Timings,
    choose_kill,
    file_identity,
    kill_group,
    kill_leader,
    survivors,
    watch_and_kill,
)
from rlhf_harness.faults.run_state import (
    ends_in_partial_line,
    first_difference,
    inspect_checkpoints,
    last_logged_step,
    pointer_step,
    records_of,
    snapshot,
    without_wall_clock,
)
from rlhf_harness.faults.verdict import COMPARED, Kill, describe, summarize
from rlhf_harness.procs import command_line

TINY = [
    "sft.max_steps=3", "sft.eval_every=2", "sft.val_size=16", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=8", "actor.micro_batch_size=4", "actor.ppo_epochs=2", "actor.warmup_steps=1",
    "algorithm.kl.coef=0.01", "algorithm.kl.adaptive=true", "trainer.eval_every=3", "trainer.sample_every=1",
    "trainer.num_samples=2", "trainer.num_threads=1", "trainer.log_every=1000",
    # a length penalty next to the exact-answer reward: non-zero advantages (and updates) from step 1
    "reward.sources=[{type: arithmetic}, {type: length, kwargs: {target: 2, coef: 0.1}}]",
]
"""Overrides that make the quickstart recipe a few-second run with state in every part."""

RESUMED = re.compile(r"resumed from \S+ after step (\d+)")


@dataclass
class Settings:
    """One fault-injection experiment."""

    workdir: Path
    """Holds reference/, killed/ and logs/ (must not hold a previous experiment)."""
    kills: int = 20
    """SIGKILLs before the run may finish (M)."""
    seed: int = 0
    """Seed of the kill moments and of the training run (trainer.seed)."""
    steps: int = 24
    """trainer.total_steps."""
    save_every: int = 2
    """trainer.save_every: at most this many steps may be lost per kill."""
    keep_last: int = 2
    """trainer.keep_last."""
    recipe: str = "quickstart"
    """The recipe both runs train (a shipped name or a YAML path)."""
    overrides: list[str] = field(default_factory=lambda: list(TINY))
    """key=value overrides of the recipe (the trainer keys above are added to them)."""
    plans: list[KillPlan] = field(default_factory=list)
    """Fixed kill moments, one per kill, instead of seeded random ones (for tests)."""
    poll_s: float = 0.002
    """Seconds between looks at the run directory while waiting for a kill moment."""
    timeout_s: float = 600.0
    """Longest a single launch may run."""
    asynchronous: bool = False
    """Train with rollout.mode: async. Every other kill then hits the trainer alone (its
    rollout process must end by itself), and the final history is checked instead of compared
    (an asynchronous run's samples depend on timing): every group trained exactly once, in
    order, or dropped and counted."""


def train_command(settings: Settings, run_dir: Path) -> list[str]:
    """The `rlhf train` command line of both runs."""
    trainer = [
        f"trainer.output_dir={run_dir}", f"trainer.total_steps={settings.steps}", f"trainer.save_every={settings.save_every}",
        f"trainer.keep_last={settings.keep_last}", f"trainer.seed={settings.seed}", "trainer.resume=auto",
    ]
    asynchronous = ["rollout.mode=async", "trainer.num_samples=4"] if settings.asynchronous else []  # one sample of each of 4 groups
    return [sys.executable, "-m", "rlhf.cli.main", "train", settings.recipe, *settings.overrides, *asynchronous, *trainer]


def launch(command: list[str], log: Path) -> subprocess.Popen:
    """Start `command` in a new session (its own process group), output to `log`."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as handle:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def reference_run(settings: Settings) -> tuple[Timings, float]:
    """Step 1: the uninterrupted run in `<workdir>/reference`; its timings and wall time."""
    run_dir = settings.workdir / "reference"
    start = time.monotonic()
    process = launch(train_command(settings, run_dir), settings.workdir / "logs" / "reference.log")
    first_record, save_seen, save_spans = None, None, []
    temporaries = run_dir / "checkpoints"
    while process.poll() is None:
        now = time.monotonic()
        if first_record is None and last_logged_step(run_dir) is not None:
            first_record = now - start
        visible = temporaries.is_dir() and any(entry.name.startswith(".tmp-step_") for entry in temporaries.iterdir())
        if visible and save_seen is None:
            save_seen = now
        elif not visible and save_seen is not None:
            save_spans.append(now - save_seen)
            save_seen = None
        time.sleep(settings.poll_s)
    if process.returncode != 0:
        raise RuntimeError(f"the reference run failed (exit {process.returncode}); see {settings.workdir / 'logs' / 'reference.log'}")
    step_times = sorted(record["time/step_s"] for record in records_of(run_dir / "metrics.jsonl") if "time/step_s" in record)
    timings = Timings(first_record or 1.0, median(step_times, 0.1), median(sorted(save_spans), 0.01))
    return timings, time.monotonic() - start


def median(sorted_values: list[float], default: float) -> float:
    return sorted_values[len(sorted_values) // 2] if sorted_values else default


def kill_once(settings: Settings, index: int, plan: KillPlan) -> tuple[Kill | None, int | None]:
    """Step 2, once: launch, kill at the moment of `plan`, inspect. Returns (the kill, None),
    or (None, the exit status) when the launch ended by itself first."""
    run_dir = settings.workdir / "killed"
    log = settings.workdir / "logs" / f"attempt_{index:03d}.log"
    before, metrics_before = snapshot(run_dir), file_identity(run_dir / "metrics.jsonl")
    process = launch(train_command(settings, run_dir), log)
    kill = kill_leader if settings.asynchronous and index % 2 else kill_group
    at_s = watch_and_kill(process, plan, run_dir, before, metrics_before, settings.poll_s, settings.timeout_s, kill)
    if at_s is None:
        return None, process.returncode
    left_commands = outlived(process.pid)
    ray_agents = [pid for pid, command in left_commands.items() if command.startswith(RAY_AGENTS)]
    left = [pid for pid in left_commands if pid not in ray_agents]
    state = inspect_checkpoints(run_dir, before, settings.keep_last)
    last_logged = last_logged_step(run_dir)
    resumed = RESUMED.search(log.read_text())
    kill = Kill(
        index, plan, round(at_s, 3), state.resume_step, last_logged, (last_logged or 0) - (state.resume_step or 0), state.save_phase,
        state.unreadable, state.leftovers, ends_in_partial_line(run_dir / "metrics.jsonl"), left,
        int(resumed.group(1)) if resumed else None, [left_commands[pid][:200] for pid in left], ray_agents,
    )
    return kill, None


RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")
"""Ray's per-node agents, which outlive a raylet that dies unexpectedly (see `Kill.ray_agents`)."""


def outlived(session: int, grace_s: float = 15.0) -> dict[int, str]:
    """Processes of a killed launch's session still alive `grace_s` after the kill (a rollout
    process whose trainer was killed gets that long to end: one killed while it still imports
    its modules notices at its first line), {pid: command line}; they are then killed."""
    deadline = time.monotonic() + grace_s
    while survivors(session) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {pid: command_line(pid) for pid in survivors(session)}  # read before the kill: a killed orphan is reaped at once
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


def kill_and_resume(settings: Settings, report=print) -> dict:
    """Run the whole experiment (steps 1-4 of the module docstring); returns the result as a
    JSON-ready dict whose summary's `ok` is true when every check held. `report` gets one line
    per event."""
    for name in ("reference", "killed"):
        if (settings.workdir / name).exists():
            raise FileExistsError(f"{settings.workdir / name} exists: give an empty --workdir")
    (settings.workdir / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    # 1. the reference
    timings, reference_s = reference_run(settings)
    report(f"reference: {reference_s:.1f} s (startup {timings.startup_s:.1f} s, step {timings.step_s:.3f} s, save {timings.save_s:.3f} s)")
    # 2. M kills, each followed by a resume
    kills, failure, finished = inject(settings, timings, report)
    # 3. the last launch runs to the end
    final_log = settings.workdir / "logs" / "final.log"
    if failure is None and not finished:
        failure = run_to_end(settings, final_log)
    # 4. compare with the reference
    check = async_history if settings.asynchronous else compare
    comparison = check(settings.workdir / "killed", settings.workdir / "reference") if failure is None else {}
    resumed = RESUMED.search(final_log.read_text()) if final_log.exists() else None
    seconds = {"reference": round(reference_s, 1), "total": round(time.monotonic() - started, 1)}
    summary = summarize(settings.kills, settings.save_every, kills, failure, comparison, int(resumed.group(1)) if resumed else None, seconds)
    return {"settings": {**asdict(settings), "workdir": str(settings.workdir)}, "command": train_command(settings, Path("RUN_DIR")),
            "timings": asdict(timings), "kills": [asdict(kill) for kill in kills], "comparison": comparison, "summary": summary}


def inject(settings: Settings, timings: Timings, report) -> tuple[list[Kill], str | None, bool]:
    """Step 2: up to `settings.kills` launches, each killed at a seeded random moment.
    Returns (the kills, why a launch failed by itself or None, whether a launch finished)."""
    rng = random.Random(settings.seed)
    kills: list[Kill] = []
    while len(kills) < settings.kills:
        resume_step = (kills[-1].resume_step or 0) if kills else 0
        if settings.plans:
            plan = settings.plans[len(kills)]
        else:
            plan = choose_kill(rng, resume_step, settings.kills - len(kills), settings.steps, settings.save_every, timings)
        kill, exit_status = kill_once(settings, len(kills) + 1, plan)
        if kill is None and exit_status == 0:
            report(f"launch {len(kills) + 1} finished before its kill ({plan})")
            return kills, None, True
        if kill is None:
            log = settings.workdir / "logs" / f"attempt_{len(kills) + 1:03d}.log"
            return kills, f"launch {len(kills) + 1} failed by itself (exit {exit_status}) before its kill ({plan}); see {log}", False
        kills.append(kill)
        report(describe(kill))
    return kills, None, False


def run_to_end(settings: Settings, log: Path) -> str | None:
    """Step 3: the last launch, not killed; why it failed, or None."""
    process = launch(train_command(settings, settings.workdir / "killed"), log)
    try:
        status = process.wait(timeout=settings.timeout_s)
    except subprocess.TimeoutExpired:
        kill_group(process)
        return f"the final launch ran past {settings.timeout_s} s; see {log}"
    return None if status == 0 else f"the final launch failed (exit {status}); see {log}"


def async_history(run_dir: Path, reference_dir: Path) -> dict:
    """Step 4 of an asynchronous run: its history on its own terms (the reference only says how
    long a step takes). Every step logged once, in order; every group of prompts trained
    exactly once and in request order, the gaps being the groups dropped as stale (counted in
    async/dropped); the policy version one per update."""
    records = [record for record in records_of(run_dir / "metrics.jsonl")]
    steps = [record["step"] for record in records]
    groups = [sample["group"] for sample in records_of(run_dir / "samples.jsonl")]
    dropped = int(sum(record.get("async/dropped", 0) for record in records))
    versions = [record["async/policy_version"] for record in records[1:]]
    expected_steps = list(range(len(steps)))
    once_in_order = groups == sorted(set(groups)) and (len(groups) + dropped == (groups[-1] + 1 if groups else 0))
    return {
        "groups": {"equal": once_in_order and steps == expected_steps and versions == [float(v) for v in range(len(versions))],
                   "records": len(groups), "dropped": dropped,
                   "difference": None if once_in_order else f"groups trained: {groups}"},
        "final_checkpoint": pointer_step(run_dir),
    }


def compare(run_dir: Path, reference_dir: Path) -> dict:
    """Step 4: the run's metrics.jsonl and samples.jsonl against the reference's, wall-clock
    keys aside; each file -> {"equal", "records", "difference"}."""
    result = {}
    for name in COMPARED:
        if not (reference_dir / name).exists() and not (run_dir / name).exists():
            continue
        got, expected = records_of(run_dir / name), records_of(reference_dir / name)
        difference = first_difference(without_wall_clock(got), without_wall_clock(expected))
        result[name] = {"equal": difference is None, "records": len(got), "difference": difference}
    result["final_checkpoint"] = pointer_step(run_dir)
    return result
