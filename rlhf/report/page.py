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

from rlhf.report.plots import PLOTS, Plot, metric_plot, phase_plot
from rlhf.report.run_data import RunData, load_run, metric_keys, series

REPORT_FILE = "report.html"

HEADLINE = (r"reward/mean", r"eval/(accuracy|pass@\d+|maj@\d+)", r"response_length/mean", r"actor/entropy", r"kl/sequence_mean", r"perf/throughput", r"time/step_s")
"""Metrics of the numbers table (first, final, min, max, mean), in this order."""

CONFIG_KEYS = (
    "model.source", "model.path", "algorithm.advantage", "actor.policy_loss", "algorithm.kl.coef", "data.train.path",
    "data.train_batch_size", "rollout.n", "rollout.max_new_tokens", "actor.lr", "trainer.total_steps", "train.engine", "distributed.backend",
)
"""Recipe keys shown in the config summary (the whole config.yaml follows, folded)."""

MAX_SAMPLES = 200
"""Sample generations shown (the most recent ones)."""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1 { margin-bottom: 0.2em; } .muted { color: #666; } .note { color: #a60; font-style: italic; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px; }
.plots figure { margin: 0; } .plots img { width: 100%; border: 1px solid #ddd; }
td.text { white-space: pre-wrap; font-family: ui-monospace, monospace; max-width: 520px; overflow-wrap: anywhere; }
pre { background: #f7f7f7; padding: 1em; overflow-x: auto; }
"""


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
    plots = [metric_plot(spec, run.metrics) for spec in PLOTS] + [phase_plot(run.metrics)]
    name = escape(run.directory.resolve().name)
    description = escape(str(config.get("description") or ""))
    return "\n".join([
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>rlhf report: {name}</title><style>{STYLE}</style></head><body>",
        (f"<h1>rlhf report: {name}</h1><p class='muted'>{escape(str(run.directory.resolve()))} · {description} · "
         f"{len(run.metrics)} metric records · written {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>"),
        "<h2>Numbers</h2>", _summary_html(run.summary), _numbers_html(run.metrics),
        "<h2>Plots</h2><div class='plots'>", *(_plot_html(plot) for plot in plots), "</div>",
        "<h2>Sample generations</h2>", _samples_html(run.samples),
        "<h2>Config</h2>", _config_html(config, run.config_text),
        "</body></html>",
    ])


def _summary_html(summary: dict) -> str:
    if not summary:
        return "<p class='note'>no summary.json: the run has not finished</p>"
    before, after = summary.get("accuracy_before"), summary.get("accuracy_after")
    accuracy = f"held-out accuracy {_number(before)} → {_number(after)}; " if before is not None else ""
    return f"<p>{escape(accuracy)}{escape(str(summary.get('steps')))} RL steps in {_number(summary.get('seconds'))} s</p>"


def _numbers_html(records: list[dict]) -> str:
    """First, final, min, max and mean of the headline metrics the run logged."""
    keys = metric_keys(records)
    rows = []
    for key in (k for pattern in HEADLINE for k in keys if re.fullmatch(pattern, k)):
        steps, values = series(records, key)
        if values:
            cells = [values[0], values[-1], min(values), max(values), sum(values) / len(values)]
            rows.append(f"<tr><td>{escape(key)}</td>{''.join(f'<td class=num>{_number(v)}</td>' for v in cells)}<td class=num>{steps[-1]}</td></tr>")
    if not rows:
        return "<p class='note'>none of the headline metrics were logged</p>"
    return "<table><tr><th>metric</th><th>first</th><th>final</th><th>min</th><th>max</th><th>mean</th><th>last step</th></tr>" + "".join(rows) + "</table>"


def _plot_html(plot: Plot) -> str:
    if plot.png is None:
        return f"<figure><figcaption><b>{escape(plot.title)}</b></figcaption><p class='note'>{escape(plot.note)}</p></figure>"
    data = base64.b64encode(plot.png).decode("ascii")
    return f"<figure><img alt='{escape(plot.title)}' src='data:image/png;base64,{data}'></figure>"


def _samples_html(samples: list[dict]) -> str:
    """The most recent sample generations, one row each (every cell escaped)."""
    if not samples:
        return "<p class='note'>no samples.jsonl: the run wrote no sample generations (trainer.sample_every)</p>"
    shown = samples[-MAX_SAMPLES:]
    sources = sorted({name for sample in shown for name in (sample.get("rewards") or {})})
    head = "".join(f"<th>{escape(h)}</th>" for h in ["step", "data source", "prompt", "response", "ground truth", "reward", *sources])
    rows = []
    for sample in shown:
        rewards = sample.get("rewards") or {}
        cells = [
            f"<td class=num>{escape(str(sample.get('step')))}</td>", f"<td>{escape(str(sample.get('data_source') or ''))}</td>",
            f"<td class=text>{escape(str(sample.get('prompt', '')))}</td>", f"<td class=text>{escape(str(sample.get('response', '')))}</td>",
            f"<td class=text>{escape(str(sample.get('ground_truth')))}</td>", f"<td class=num>{_number(sample.get('reward'))}</td>",
            *(f"<td class=num>{_number(rewards.get(name))}</td>" for name in sources),
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    note = f"<p class='muted'>the last {len(shown)} of {len(samples)} samples</p>" if len(samples) > len(shown) else ""
    return note + f"<table><tr>{head}</tr>" + "".join(rows) + "</table>"


def _config_html(config: dict, text: str) -> str:
    if not text:
        return "<p class='note'>no config.yaml in the run directory</p>"
    rows = []
    for key in CONFIG_KEYS:
        value = _lookup(config, key)
        if value not in (None, ""):
            rows.append(f"<tr><td>{escape(key)}</td><td>{escape(str(value))}</td></tr>")
    table = "<table>" + "".join(rows) + "</table>" if rows else ""
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
