"""The inference-scaling curve: accuracy against the number of samples per prompt and against
the tokens they cost, from one evaluation's n samples and step beams (`scaling.json`, `scaling.png`).

T1 (Hou et al. 2025, "Advancing Language Model Reasoning through Reinforcement Learning and
Inference Scaling") judges a reasoning policy by how its accuracy grows with the inference
budget. Its own budget is the length of one long generation; here the budget is spent on
repeated sampling, k = 1, 2, 4, ..., n samples per prompt, used two ways: pass@k (an oracle
picks any correct sample: the ceiling of verifier-based selection) and maj@k (majority vote,
no verifier). The token budget of k samples is k times the mean sampled response length, so
runs with short and long responses compare at equal cost. When the samples were scored by a
reward model, each search strategy judged on them (best-of-k, the score-weighted vote:
:mod:`rlhf.search.at_k`) is one more line at the same budgets. The step beam spends its own
tokens: it is one more line with a point per beam width, placed by the tokens it generated per
prompt and, on the samples panel, by the steps it sampled per prompt (a step is only a piece
of a response, so it is the tokens panel that compares strategies at equal compute).
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.eval.outcomes import EvalOutcomes, mean_maj_at_k, search_at_k
from rlhf.eval.passk import mean_pass_at_k, sample_budgets
from rlhf.eval.step_beam import beam_points


def scaling_points(outcomes: EvalOutcomes) -> list[dict[str, float]]:
    """One point per k in 1, 2, 4, ..., n: {k, tokens_per_prompt, pass@k, maj@k} and
    `<strategy>@k` for each search strategy the samples were scored for."""
    mean_length = outcomes.sample_length.mean().item()
    return [
        {"k": k, "tokens_per_prompt": k * mean_length, "pass@k": mean_pass_at_k(outcomes.sample_correct, k),
         "maj@k": mean_maj_at_k(outcomes.ballots, k), **{f"{name}@k": value for name, value in search_at_k(outcomes, k).items()}}
        for k in sample_budgets(outcomes.num_samples)
    ]


def curve_lines(points: list[dict[str, float]]) -> list[str]:
    """The accuracy series of a curve's points, in drawing order: pass@k, maj@k, then the
    search strategies' `<strategy>@k`."""
    return [key for key in points[0] if key not in ("k", "tokens_per_prompt")] if points else []


def scaling_curve(outcomes: EvalOutcomes) -> dict:
    """What `scaling.json` holds: the greedy reference point; with samples, one point per k
    over all prompts (`points`) and per data source when there are several (`per_source`);
    with the step beam, its line (`step_beam`: one point per width, :func:`beam_points`)."""
    sampled = outcomes.num_samples > 0
    curve = {
        "num_prompts": len(outcomes.greedy_correct),
        "samples_per_prompt": outcomes.num_samples,
        "mean_response_length": outcomes.sample_length.mean().item() if sampled else None,
        "greedy": {"accuracy": outcomes.greedy_correct.float().mean().item(), "tokens_per_prompt": outcomes.greedy_length.mean().item()},
        "points": scaling_points(outcomes) if sampled else [],
    }
    if outcomes.beams:
        curve["step_beam"] = beam_points(outcomes.beams)
    groups = outcomes.by_source()
    if sampled and len(groups) > 1:
        curve["per_source"] = {source: scaling_points(part) for source, part in groups.items()}
    return curve


def write_scaling(curve: dict, out_dir: Path, title: str = "") -> tuple[Path, Path]:
    """Write `scaling.json` and `scaling.png` (two panels: accuracy vs samples, accuracy vs
    tokens per prompt, both on log2 axes) into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / "scaling.json", out_dir / "scaling.png"
    json_path.write_text(json.dumps(curve, indent=2) + "\n")
    plot_scaling(curve, png_path, title)
    return json_path, png_path


PANELS = (("k", "steps_per_prompt", "samples per prompt (k; step beam: steps sampled)"),
          ("tokens_per_prompt", "tokens_per_prompt", "tokens per prompt"))
"""(x key of a sample point, x key of a step-beam point, axis label) of each panel."""


def plot_scaling(curve: dict, path: Path, title: str = "") -> None:
    """The PNG of :func:`write_scaling`, drawn with matplotlib's Agg canvas (no display, no
    pyplot state shared with the caller)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    points, beam = curve["points"], curve.get("step_beam", [])
    for axis, (x_key, beam_x_key, label) in zip(figure.subplots(1, 2), PANELS):
        for line, marker in zip(curve_lines(points), "osD^v<>"):
            axis.plot([point[x_key] for point in points], [point[line] for point in points], marker=marker, label=line)
        if beam:
            _plot_beam(axis, beam, beam_x_key, "step beam (x: steps sampled)" if x_key == "k" else "step beam")
        axis.axhline(curve["greedy"]["accuracy"], color="grey", linestyle="--", label="greedy")
        if min([point[x_key] for point in points] + [point[beam_x_key] for point in beam], default=0) > 0:
            axis.set_xscale("log", base=2)
            axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 2, 4 rather than 2^0, 2^1, 2^2
        axis.set(xlabel=label, ylabel="accuracy")
        axis.set_ylim(0, min(1.02, axis.get_ylim()[1] * 1.1))
        axis.grid(alpha=0.3)
        axis.legend(loc="best")
    samples = f", {curve['samples_per_prompt']} samples each" if curve["samples_per_prompt"] else ""
    figure.suptitle(title or f"inference scaling: {curve['num_prompts']} prompts{samples}")
    figure.savefig(path, dpi=100)


def _plot_beam(axis, beam: list[dict], x_key: str, label: str) -> None:
    """The step beam's line on one panel, each point marked with its width."""
    x, y = [point[x_key] for point in beam], [point["accuracy"] for point in beam]
    axis.plot(x, y, marker="*", markersize=12, label=label)
    for point, x_value, y_value in zip(beam, x, y):
        axis.annotate(f"w={point['beam_width']}", (x_value, y_value), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
