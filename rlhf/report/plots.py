"""PNG plots of a run's metrics, drawn on matplotlib's Agg canvas (no display, no pyplot state).

Each plot gathers the metric keys that match its pattern; a plot whose keys the run never
logged, or logged as zero throughout only because a feature was off (the old-vs-new policy KL
of a run without a KL penalty and with one update per batch), is not drawn: it comes back with
a note saying why.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

from rlhf.report.run_data import metric_keys, series


@dataclass(frozen=True)
class PlotSpec:
    """One plot: a title, the y-axis label, and a regular expression the keys fully match."""

    title: str
    ylabel: str
    pattern: str
    zero_means_off: str = ""
    """Keys (a regular expression) whose series, when zero throughout, only say that a feature
    was off: they are left out ('': none)."""
    off_note: str = ""
    """Why the plot is not drawn when nothing but such series remained."""
    x: str = "step"
    """The records' step key (the x axis)."""
    xlabel: str = "RL step"


PLOTS = (
    PlotSpec("Reward", "reward", r"reward/mean|reward/[^/]+/mean|eval/reward"),
    PlotSpec("Held-out accuracy", "accuracy", r"eval/(accuracy|pass@\d+|maj@\d+)"),
    # kl/sequence_mean and actor/kl are logged only with a KL penalty; approx_kl (old vs new
    # policy) always, and it is zero when each batch gets a single update
    PlotSpec("KL divergence", "KL", r"kl/sequence_mean|actor/kl|actor/approx_kl", zero_means_off=r"actor/approx_kl",
             off_note="no KL penalty (algorithm.kl.coef 0), and actor/approx_kl is zero throughout (one policy update per batch)"),
    PlotSpec("Policy entropy", "nats per token", r"actor/entropy"),
    PlotSpec("Response length", "tokens", r"response_length/(mean|max)|eval/(sampled_)?response_length"),
    PlotSpec("Throughput", "tokens / s (perf/throughput: per device)", r"perf/throughput|perf/tokens_per_s"),
)
"""The metric plots of a report, in page order (phase times are drawn by :func:`phase_plot`)."""

SFT_PLOTS = (
    PlotSpec("SFT loss", "NLL per response token", r"sft/loss", x="sft/step", xlabel="SFT step"),
    PlotSpec("SFT validation accuracy", "greedy accuracy", r"sft/val_accuracy", x="sft/step", xlabel="SFT step"),
    PlotSpec("SFT gradient norm", "gradient norm", r"sft/grad_norm", x="sft/step", xlabel="SFT step"),
)
"""The plots of the supervised stage (sft_metrics.jsonl), against the SFT step."""

SMOOTH_FROM = 20
"""Series with at least this many points also get a trailing-mean line (raw points stay faint)."""

_NOT_PHASES = ("time/step_s", "time/eval_s", "time/rollout_wait_s", "time/rollout_generate_s")
"""Timed spans that are not phases of a step (eval runs after it; the rollout process of an
asynchronous run keeps its own time, beside the trainer's)."""

OVERLAP = PlotSpec("Asynchronous overlap", "seconds per step", r"time/(trainer_wait|rollout_wait|rollout_generate|update)_s")
"""How each side of an asynchronous run spent a step: the trainer waiting and updating, the
rollout process waiting and generating."""


@dataclass
class Plot:
    """A drawn plot (PNG bytes) or, when there was nothing to draw, why not."""

    title: str
    png: bytes | None = None
    note: str = ""


def metric_plot(spec: PlotSpec, records: list[dict]) -> Plot:
    """The lines of every key matching `spec.pattern`, against the step key `spec.x`."""
    pattern = re.compile(spec.pattern)
    lines = merge_equal({key: series(records, key, spec.x) for key in metric_keys(records, spec.x) if pattern.fullmatch(key)})
    if not lines:
        return Plot(spec.title, note=f"not plotted: the run logged no metric matching {spec.pattern}")
    if spec.zero_means_off:
        lines = {label: points for label, points in lines.items() if any(points[1]) or not re.fullmatch(spec.zero_means_off, label)}
        if not lines:
            return Plot(spec.title, note=f"not plotted: {spec.off_note}")
    figure, axis = _figure(spec.title, spec.ylabel, spec.xlabel)
    for label, (steps, values) in lines.items():
        _draw_line(axis, label, steps, values)
    axis.legend(fontsize=8, loc="best", framealpha=0.7)
    return Plot(spec.title, _png(figure))


def phase_plot(records: list[dict]) -> Plot:
    """Seconds per phase of each RL step, stacked (the top edge is the timed part of the step),
    with the whole step's time as a dashed line."""
    title = "Phase times"
    steps = [r["step"] for r in records if r.get("step", 0) > 0 and isinstance(r.get("time/step_s"), (int, float))]
    phases = [k for k in metric_keys(records) if k.startswith("time/") and k.endswith("_s") and k not in _NOT_PHASES]
    if not steps or not phases:
        return Plot(title, note="not plotted: the run logged no time/<phase>_s metrics")
    by_step = {r["step"]: r for r in records}
    figure, axis = _figure(title, "seconds per step")
    stacks = [[by_step[s].get(key) or 0.0 for s in steps] for key in phases]
    axis.stackplot(steps, stacks, labels=[key.removeprefix("time/").removesuffix("_s") for key in phases], alpha=0.8)
    axis.plot(steps, [by_step[s]["time/step_s"] for s in steps], color="black", linestyle="--", linewidth=1, label="whole step")
    axis.legend(fontsize=8, loc="upper left", ncol=2, framealpha=0.7)
    return Plot(title, _png(figure))


def async_plots(records: list[dict]) -> list[Plot]:
    """An asynchronous run's overlap and staleness histogram (none for a synchronous run)."""
    if not any("async/staleness_mean" in record for record in records):
        return []
    return [metric_plot(OVERLAP, records), staleness_plot(records)]


def staleness_plot(records: list[dict]) -> Plot:
    """Share of the trained samples per staleness (updates between the policy that sampled a
    sample and the one it trained), over the whole run."""
    title = "Staleness of trained samples"
    keys = sorted((k for k in metric_keys(records) if k.startswith("async/staleness_hist/")), key=lambda k: (">" in k, k))
    steps = [r for r in records if any(k in r for k in keys)]
    figure, axis = _figure(title, "share of samples", "staleness (updates)")
    labels = [key.removeprefix("async/staleness_hist/") for key in keys]
    axis.bar(labels, [sum(r.get(key, 0.0) for r in steps) / len(steps) for key in keys], color="tab:blue", alpha=0.8)
    axis.set_ylim(0, 1)
    return Plot(title, _png(figure))


def merge_equal(lines: dict[str, tuple[list, list]]) -> dict[str, tuple[list, list]]:
    """Drop empty series and draw equal ones once, labelled `a = b` (one reward source's mean
    is the reward mean; with one device, throughput is tokens per second)."""
    merged: dict[str, tuple[list, list]] = {}
    for key, points in lines.items():
        same = next((label for label, other in merged.items() if other == points), None)
        if same is not None:
            merged[f"{same} = {key}"] = merged.pop(same)
        elif points[0]:
            merged[key] = points
    return merged


def _draw_line(axis, label: str, steps: list[int], values: list[float]) -> None:
    """A metric's points; long series faint, under a trailing mean in the same colour."""
    if len(values) < SMOOTH_FROM:
        axis.plot(steps, values, marker="o", markersize=3, label=label)
        return
    (raw,) = axis.plot(steps, values, alpha=0.3, linewidth=1)
    window = max(2, len(values) // 20)
    smooth = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]
    axis.plot(steps, smooth, color=raw.get_color(), linewidth=1.8, label=f"{label} (mean of {window})")


def _figure(title: str, ylabel: str, xlabel: str = "RL step"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    axis.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axis.grid(alpha=0.3)
    return figure, axis


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
