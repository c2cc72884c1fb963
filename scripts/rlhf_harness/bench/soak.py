"""The verdict of a soak run (`scripts/soak.py`): does a long run hold on to memory,
file descriptors or processes it should have let go?

From the samples of :mod:`rlhf_harness.bench.monitor` (a few per second, keyed by the last logged
step):
    (1) resident memory of the main process: at the first RL step, after the warm-up, at the end
        (before the last step), and its growth per 100 steps after the warm-up, the slope of a
        least-squares line through (step, RSS): one number that a single evaluation or
        checkpoint spike barely moves
    (2) open file descriptors: the fewest seen in the first `window` steps after the warm-up
        against the fewest in the last `window` steps before the final one (the minimum skips
        the files a checkpoint or an evaluation holds open for a moment; `window` should span
        an eval/save cycle, and the warm-up the first one: files opened at the first sample
        log, such as samples.jsonl, stay open by design)
    (3) child processes: the most alive at once, and any still alive after the run exited
Failures: growth above `max_growth_mib` per 100 steps (judged when the fit spans at least
`MIN_FIT_STEPS`), more descriptors at the end, a process left behind, an unexpected exit
status, or a run that stopped short.
"""

from __future__ import annotations

from rlhf_harness.bench.monitor import Watch
from rlhf_harness.procs import MIB

MIN_FIT_STEPS = 50
"""Fewest steps the growth fit must span to be judged: over a few steps the slope is noise."""


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (0.0 with fewer than two distinct xs)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def first_at(samples: list[dict], step: int) -> dict | None:
    """The first sample taken once step `step` was logged."""
    return next((s for s in samples if s["step"] is not None and s["step"] >= step), None)


def memory_summary(samples: list[dict], warmup: int, last_step: int) -> dict:
    """Step 1 of the module docstring, in MiB. The fit and the end stop before the last step
    is logged: after it the run evaluates, checkpoints and tears down, and RSS falls."""
    start, settled = first_at(samples, 1), first_at(samples, warmup)
    before_rl = [s for s in samples if s["step"] is None]  # metrics.jsonl not yet written: set-up, SFT
    after = [s for s in samples if s["step"] is not None and warmup <= s["step"] < last_step]
    growth = slope([s["step"] for s in after], [s["rss"] for s in after]) * 100 / MIB
    end, last = (after[-1] if after else None), (samples[-1] if samples else None)

    def mib(sample: dict | None, key: str = "rss") -> float | None:
        return None if sample is None else round(sample[key] / MIB, 1)

    return {
        "rss_before_rl_mib": mib(before_rl[-1] if before_rl else None), "rss_start_mib": mib(start), "rss_after_warmup_mib": mib(settled),
        "rss_end_mib": mib(end), "rss_exit_mib": mib(last), "rss_peak_mib": mib(last, "hwm"), "tree_rss_end_mib": mib(end, "tree_rss"),
        "growth_mib_per_100_steps": round(growth, 2), "fit_samples": len(after),
        "fit_steps": after[-1]["step"] - after[0]["step"] if after else 0,
    }


def fd_summary(samples: list[dict], warmup: int, last_step: int, window: int) -> dict:
    """Step 2 of the module docstring."""
    # both windows end before the last step is logged: after it the run closes its files on the way out
    early = [s["fds"] for s in samples if s["step"] is not None and warmup <= s["step"] < min(warmup + window, last_step)]
    late = [s["fds"] for s in samples if s["step"] is not None and last_step - window < s["step"] < last_step]
    start = first_at(samples, 1)
    return {
        "fds_start": start["fds"] if start else None, "fds_end": samples[-1]["fds"] if samples else None,
        "fds_after_warmup_min": min(early) if early else None, "fds_end_min": min(late) if late else None,
        "fds_max": max((s["fds"] for s in samples), default=None), "files_opened_after_warmup": files_opened(samples, warmup, last_step),
    }


def files_opened(samples: list[dict], warmup: int, last_step: int) -> list[str]:
    """What the last listing of open descriptors before the final step holds that the last one
    before the warm-up ended did not (the diagnosis of a descriptor leak)."""
    listings = [s for s in samples if "files" in s and s["step"] is not None]
    before = [s["files"] for s in listings if s["step"] < warmup]
    end = [s["files"] for s in listings if s["step"] < last_step]
    if not before or not end:
        return []
    remaining = list(before[-1])
    opened = []
    for target in end[-1]:
        if target in remaining:
            remaining.remove(target)
        else:
            opened.append(target)
    return opened


def summarise(watch: Watch, *, steps: int, warmup: int, window: int, max_growth_mib: float, expect_interrupt: bool = False) -> dict:
    """Steps 1-3 and the failures (an empty `failures` list: the run passed)."""
    samples = watch.samples
    reached = max((s["step"] for s in samples if s["step"] is not None), default=0)
    memory = memory_summary(samples, warmup, reached)
    fds = fd_summary(samples, warmup, reached, window)
    failures = []
    expected_status = 130 if expect_interrupt else 0
    if watch.timed_out:
        failures.append("timed out")
    if watch.returncode != expected_status:
        failures.append(f"exit status {watch.returncode} (expected {expected_status})")
    if not expect_interrupt and reached < steps:
        failures.append(f"stopped at step {reached} of {steps}")
    if memory["fit_steps"] >= MIN_FIT_STEPS and memory["growth_mib_per_100_steps"] > max_growth_mib:
        failures.append(f"RSS grew {memory['growth_mib_per_100_steps']:.1f} MiB per 100 steps after warm-up (bound {max_growth_mib:g})")
    if None not in (fds["fds_end_min"], fds["fds_after_warmup_min"]) and fds["fds_end_min"] > fds["fds_after_warmup_min"]:
        failures.append(f"open file descriptors grew from {fds['fds_after_warmup_min']} to {fds['fds_end_min']} "
                        f"(opened since the warm-up: {', '.join(fds['files_opened_after_warmup']) or 'not listed'})")
    if watch.left_behind:
        failures.append(f"{len(watch.left_behind)} process(es) left behind: " + "; ".join(watch.left_behind))
    children = {"children_max": max((s["children"] for s in samples), default=0), "children_seen": watch.children_seen, "left_behind": watch.left_behind}
    return {
        "returncode": watch.returncode, "seconds": round(watch.seconds, 1), "steps_reached": reached, "interrupted_at": watch.interrupted_at,
        **memory, **fds, **children, "failures": failures,
    }


def report(summary: dict, max_growth_mib: float) -> str:
    """The summary as lines for the terminal."""
    def number(value) -> str:
        return "-" if value is None else f"{value}"

    return "\n".join([
        f"exit status {summary['returncode']} after {summary['seconds']} s, {summary['steps_reached']} steps",
        (f"RSS (MiB): before RL {number(summary['rss_before_rl_mib'])}, step 1 {number(summary['rss_start_mib'])}, "
         f"after warm-up {number(summary['rss_after_warmup_mib'])}, end {number(summary['rss_end_mib'])}, at exit {number(summary['rss_exit_mib'])}, "
         f"peak {number(summary['rss_peak_mib'])}"),
        (f"RSS growth after warm-up: {summary['growth_mib_per_100_steps']:+.2f} MiB per 100 steps "
         f"(least squares over {summary['fit_samples']} samples, {summary['fit_steps']} steps; "
         + (f"bound {max_growth_mib:g})" if summary["fit_steps"] >= MIN_FIT_STEPS else f"not judged: fewer than {MIN_FIT_STEPS} steps)")),
        (f"open fds: start {number(summary['fds_start'])}, end {number(summary['fds_end'])}; fewest after warm-up "
         f"{number(summary['fds_after_warmup_min'])}, fewest at the end {number(summary['fds_end_min'])}, most {number(summary['fds_max'])}"),
        (f"child processes: at most {summary['children_max']} at once, {summary['children_seen']} seen, "
         f"{len(summary['left_behind'])} left after exit"),
        "PASS" if not summary["failures"] else "FAIL: " + "; ".join(summary["failures"]),
    ])
