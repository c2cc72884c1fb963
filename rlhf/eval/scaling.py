"""The inference-scaling curve: accuracy against the number of samples per prompt and against
the tokens they cost, from one evaluation's n samples (`scaling.json`, `scaling.png`).

T1 (Hou et al. 2025, "Advancing Language Model Reasoning through Reinforcement Learning and
Inference Scaling") judges a reasoning policy by how its accuracy grows with the inference
budget. Its own budget is the length of one long generation; here the budget is spent on
repeated sampling, k = 1, 2, 4, ..., n samples per prompt, used two ways: pass@k (an oracle
picks any correct sample: the ceiling of verifier-based selection) and maj@k (majority vote,
no verifier). The token budget of k samples is k times the mean sampled response length, so
runs with short and long responses compare at equal cost. When the samples were scored by a
reward model, each search strategy judged on them (best-of-k, the score-weighted vote:
:mod:`rlhf.search.at_k`) is one more line at the same budgets; the step beam, which spends its
own tokens, is one point on the tokens panel.
"""

from __future__ import annotations

import json
from pathlib import Path

from rlhf.eval.outcomes import EvalOutcomes, mean_maj_at_k, search_at_k
from rlhf.eval.passk import mean_pass_at_k, sample_budgets


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


def scaling_curve(outcomes: EvalOutcomes, beam_settings: dict | None = None) -> dict:
    """The curve over all prompts, the greedy reference point, the step beam's point (with
    its `beam_settings`) when it ran, and one curve per data source when there are several
    (what `scaling.json` holds). Needs n >= 1 samples per prompt."""
    curve = {
        "num_prompts": len(outcomes.greedy_correct),
        "samples_per_prompt": outcomes.num_samples,
        "mean_response_length": outcomes.sample_length.mean().item(),
        "greedy": {"accuracy": outcomes.greedy_correct.float().mean().item(), "tokens_per_prompt": outcomes.greedy_length.mean().item()},
        "points": scaling_points(outcomes),
    }
    if outcomes.beam is not None:
        beam = outcomes.beam
        curve["step_beam"] = {**(beam_settings or {}), "accuracy": beam.correct.float().mean().item(),
                              "tokens_per_prompt": beam.tokens.mean().item(), "steps_per_prompt": beam.steps.mean().item()}
    groups = outcomes.by_source()
    if len(groups) > 1:
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


def plot_scaling(curve: dict, path: Path, title: str = "") -> None:
    """The PNG of :func:`write_scaling`, drawn with matplotlib's Agg canvas (no display, no
    pyplot state shared with the caller)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    points, greedy = curve["points"], curve["greedy"]
    for axis, x_key, label in zip(figure.subplots(1, 2), ("k", "tokens_per_prompt"), ("samples per prompt (k)", "tokens per prompt")):
        x = [point[x_key] for point in points]
        for line, marker in zip(curve_lines(points), "osD^v<>"):
            axis.plot(x, [point[line] for point in points], marker=marker, label=line)
        axis.axhline(greedy["accuracy"], color="grey", linestyle="--", label="greedy")
        if "step_beam" in curve and x_key == "tokens_per_prompt":  # its samples are steps, not responses
            beam = curve["step_beam"]
            axis.plot([beam["tokens_per_prompt"]], [beam["accuracy"]], marker="*", markersize=14, linestyle="none", label="step beam")
        if min(x) > 0:
            axis.set_xscale("log", base=2)
            axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1, 2, 4 rather than 2^0, 2^1, 2^2
        axis.set(xlabel=label, ylabel="accuracy")
        axis.set_ylim(0, min(1.02, axis.get_ylim()[1] * 1.1))
        axis.grid(alpha=0.3)
        axis.legend(loc="best")
    figure.suptitle(title or f"inference scaling: {curve['num_prompts']} prompts, {curve['samples_per_prompt']} samples each")
    figure.savefig(path, dpi=100)
