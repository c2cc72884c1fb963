"""The report page: one self-contained HTML file (plots embedded as PNG data URIs, inline CSS,
no scripts) that any browser opens offline. Every text taken from the run is HTML-escaped:
prompts and responses are model input and output, not markup."""

from __future__ import annotations

import base64
import functools
import re
import time
from html import escape
from pathlib import Path

import yaml

from rlhf.report.plots import PLOTS, SFT_PLOTS, Plot, async_plots, metric_plot, phase_plot
from rlhf.report.run_data import RunData, load_run, metric_keys, series

REPORT_FILE = "report.html"

HEADLINE = (r"reward/mean", r"eval/(accuracy|success_rate|pass@\d+|maj@\d+)", r"env/(success_rate|turns_mean)", r"response_length/mean", r"actor/entropy", r"kl/sequence_mean", r"perf/throughput", r"time/step_s")
"""Metrics of the numbers table (first, final, min, max, mean), in this order."""

SFT_HEADLINE = (r"sft/loss", r"sft/val_accuracy")
"""Metrics of the supervised stage in the numbers table."""

CONFIG_KEYS = (
    "model.source", "model.path", "algorithm.advantage", "actor.policy_loss", "algorithm.kl.coef", "data.train.path",
    "data.train_batch_size", "rollout.n", "rollout.max_new_tokens", "actor.lr", "trainer.total_steps", "train.engine", "distributed.backend",
)
"""Recipe keys shown in the config summary (the whole config.yaml follows, folded)."""

MAX_SAMPLES = 200
"""Sample generations shown (the most recent ones)."""

STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 1400px; color: #222; overflow-wrap: anywhere; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; } .note { color: #a60; font-style: italic; margin: 0.2em 0; }
.wide { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; overflow-wrap: normal; }
table.samples { width: 100%; table-layout: fixed; } col.num { width: 6em; } col.source { width: 9em; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(560px, 100%), 1fr)); gap: 12px; }
.plots figure { margin: 0; min-width: 0; } .plots img { display: block; width: 100%; height: auto; border: 1px solid #ddd; }
td.text { white-space: pre-wrap; font-family: ui-monospace, monospace; }
pre { background: #f7f7f7; padding: 1em; max-width: 100%; overflow-x: auto; overflow-wrap: normal; }
"""
"""No element may be wider than the window: the body's width includes its padding, plots share
the row, the samples table divides the width among its columns (long text wraps inside its
cell), and whatever still cannot shrink (a config line) scrolls inside its own box."""


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render the report of `run_dir` into `out` (default `<run_dir>/report.html`); returns it."""
    run = load_run(run_dir)
    path = Path(out) if out else run.directory / REPORT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(run), encoding="utf-8")
    return path


def render(run: RunData) -> str:
    """The whole page of `run`."""
    config = _parse_config(run.config_text)
    name = escape(run.directory.resolve().name)
    description = escape(str(config.get("description") or ""))
    counts = [f"{len(records)} {what} records" for records, what in ((run.metrics, "metric"), (run.sft_metrics, "SFT")) if records]
    return "\n".join([
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>rlhf report: {name}</title><style>{STYLE}</style></head><body>",
        (f"<h1>rlhf report: {name}</h1><p class='muted'>{escape(str(run.directory.resolve()))} · {description} · "
         f"{' · '.join(counts)} · written {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>"),
        "<h2>Numbers</h2>", _summary_html(run), _numbers_html(run),
        *_plots_html(run),
        "<h2>Sample generations</h2>", _samples_html(run),
        "<h2>Config</h2>", _config_html(config, run.config_text),
        "</body></html>",
    ])


def _plots_html(run: RunData) -> list[str]:
    """The RL plots (when the run has RL steps) and the SFT plots (when it had an SFT stage)."""
    sections = []
    if run.metrics:
        plots = [metric_plot(spec, run.metrics) for spec in PLOTS] + [phase_plot(run.metrics)] + async_plots(run.metrics)
        sections += ["<h2>Plots</h2>", _plot_grid(plots)]
    if run.sft_metrics:
        sections += ["<h2>Supervised warm start (SFT)</h2>", _plot_grid([metric_plot(spec, run.sft_metrics) for spec in SFT_PLOTS])]
    return sections


def _plot_grid(plots: list[Plot]) -> str:
    """The drawn plots side by side; one line of note for each plot not drawn, and why."""
    drawn = "".join(_plot_html(plot) for plot in plots if plot.png is not None)
    notes = "".join(f"<p class='note'>{escape(plot.title)}: {escape(plot.note)}</p>" for plot in plots if plot.png is None)
    return f"<div class='plots'>{drawn}</div>{notes}"


def _summary_html(run: RunData) -> str:
    summary = run.summary
    if not summary and not run.metrics:
        return f"<p>{escape(_sft_summary(run.sft_metrics))}</p>"
    if not summary:
        return "<p class='note'>no summary.json: the run has not finished</p>"
    before, after = summary.get("accuracy_before"), summary.get("accuracy_after")
    accuracy = f"held-out accuracy {_number(before)} → {_number(after)}; " if before is not None else ""
    return f"<p>{escape(accuracy)}{escape(str(summary.get('steps')))} RL steps in {_number(summary.get('seconds'))} s</p>"


def _sft_summary(records: list[dict]) -> str:
    """One line on an SFT-only run (`rlhf sft`): steps and validation accuracy first → last."""
    _, accuracy = series(records, "sft/val_accuracy", "sft/step")
    trained = max((r["sft/step"] for r in records if isinstance(r.get("sft/step"), int)), default=0)
    line = f"an SFT-only run (rlhf sft, no RL steps): {trained} SFT steps"
    return line + (f"; validation accuracy {_number(accuracy[0])} → {_number(accuracy[-1])}" if accuracy else "")


def _numbers_html(run: RunData) -> str:
    """First, final, min, max and mean of the headline metrics the run logged (RL, then SFT)."""
    rows = _number_rows(run.metrics, HEADLINE, "step") + _number_rows(run.sft_metrics, SFT_HEADLINE, "sft/step")
    if not rows:
        return "<p class='note'>none of the headline metrics were logged</p>"
    head = "<tr><th>metric</th><th>first</th><th>final</th><th>min</th><th>max</th><th>mean</th><th>last step</th></tr>"
    return f"<div class='wide'><table>{head}{''.join(rows)}</table></div>"


def _number_rows(records: list[dict], patterns: tuple[str, ...], x: str) -> list[str]:
    keys = metric_keys(records, x)
    rows = []
    for key in (k for pattern in patterns for k in keys if re.fullmatch(pattern, k)):
        steps, values = series(records, key, x)
        if values:
            cells = [values[0], values[-1], min(values), max(values), sum(values) / len(values)]
            rows.append(f"<tr><td>{escape(key)}</td>{''.join(f'<td class=num>{_number(v)}</td>' for v in cells)}<td class=num>{steps[-1]}</td></tr>")
    return rows


def _plot_html(plot: Plot) -> str:
    """A drawn plot as an embedded PNG."""
    data = base64.b64encode(plot.png).decode("ascii")
    return f"<figure><img alt='{escape(plot.title)}' src='data:image/png;base64,{data}'></figure>"


def _samples_html(run: RunData) -> str:
    """The most recent sample generations, one row each (every cell escaped)."""
    samples = run.samples
    if not samples:
        why = "an SFT-only run generates no samples" if not run.metrics else "the run wrote no sample generations (trainer.sample_every)"
        return f"<p class='note'>no samples.jsonl: {why}</p>"
    shown = samples[-MAX_SAMPLES:]
    sources = sorted({name for sample in shown for name in (sample.get("rewards") or {})})
    columns = "<colgroup><col class=num><col class=source><col><col><col>" + "<col class=num>" * (1 + len(sources)) + "</colgroup>"
    head = "".join(f"<th>{escape(h)}</th>" for h in ["step", "data source", "prompt", "response", "ground truth", "reward", *sources])
    rows = []
    for sample in shown:
        rewards = sample.get("rewards") or {}
        cells = [
            f"<td class=num>{escape(str(sample.get('step')))}</td>", f"<td>{escape(str(sample.get('data_source') or ''))}</td>",
            f"<td class=text>{escape(str(sample.get('prompt', '')))}</td>", f"<td class=text>{escape(_response_text(sample))}</td>",
            f"<td class=text>{escape(str(sample.get('ground_truth')))}</td>", f"<td class=num>{_number(sample.get('reward'))}</td>",
            *(f"<td class=num>{_number(rewards.get(name))}</td>" for name in sources),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p class='muted'>the last {len(shown)} of {len(samples)} samples</p>" if len(samples) > len(shown) else ""
    return note + f"<div class='wide'><table class=samples>{columns}<tr>{head}</tr>" + "".join(rows) + "</table></div>"


def _config_html(config: dict, text: str) -> str:
    if not text:
        return "<p class='note'>no config.yaml in the run directory</p>"
    rows = []
    for key in CONFIG_KEYS:
        value = _lookup(config, key)
        if value not in (None, ""):
            rows.append(f"<tr><td>{escape(key)}</td><td>{escape(str(value))}</td></tr>")
    table = "<div class='wide'><table>" + "".join(rows) + "</table></div>" if rows else ""
    return f"{table}<details><summary>config.yaml</summary><pre>{escape(text)}</pre></details>"


def _parse_config(text: str) -> dict:
    try:
        parsed = yaml.safe_load(text) if text else {}
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _lookup(config: dict, key: str):
    """The value at dotted `key`, or None."""
    return functools.reduce(lambda node, part: node.get(part) if isinstance(node, dict) else None, key.split("."), config)


def _number(value) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return escape(str(value)) if value is not None else "–"
    return f"{value:.4g}"


def _response_text(sample: dict) -> str:
    """The response cell: a multi-turn episode's whole conversation, one line per action
    ('agent:') or observation ('env:'), and how it ended; else the response."""
    if not sample.get("conversation"):
        return str(sample.get("response", ""))
    lines = [f"{'agent' if turn['role'] == 'assistant' else 'env'}: {turn['text'].strip()}" for turn in sample["conversation"][1:]]
    ending = "success" if sample.get("success") else "truncated" if sample.get("truncated") else "done"
    return "\n".join([*lines, f"[{sample.get('turns')} turns, {ending}]"])

