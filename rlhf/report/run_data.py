"""What a report reads from a run directory: metrics.jsonl (RL steps) or sft_metrics.jsonl
(the supervised stage; an `rlhf sft` run has only this one), and samples.jsonl, summary.json
and config.yaml (each optional)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.logging.jsonl import METRICS_FILE, SAMPLES_FILE, read_jsonl

SFT_METRICS_FILE = "sft_metrics.jsonl"
"""The supervised stage's records (`rlhf sft`, or the warm start of `rlhf train`), one per SFT step."""


@dataclass
class RunData:
    """The records of one run, as written by the jsonl logger and the loop."""

    directory: Path
    metrics: list[dict]
    """One record per RL step (step 0: the evaluation before RL); empty for an SFT-only run."""
    sft_metrics: list[dict] = field(default_factory=list)
    """One record per SFT step (`sft/step`), plus one per validation; empty without SFT."""
    samples: list[dict] = field(default_factory=list)
    """Sample generations, each with its step."""
    summary: dict = field(default_factory=dict)
    """summary.json of a finished run (accuracy before / after, steps, seconds)."""
    config_text: str = ""
    """The resolved recipe (config.yaml) as written."""


def load_run(directory: str | Path) -> RunData:
    """Read a run directory; a ConfigError naming the path when it is not one."""
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"rlhf report: run directory {str(path)!r} does not exist")
    metrics_path, sft_path = path / METRICS_FILE, path / SFT_METRICS_FILE
    if not (metrics_path.is_file() or sft_path.is_file()):
        raise ConfigError(f"rlhf report: {str(path)!r} is not a run directory: it has no {METRICS_FILE} "
                          f"(written by `rlhf train`) and no {SFT_METRICS_FILE} (written by `rlhf sft`)")
    metrics = _read_records(metrics_path) if metrics_path.is_file() else []
    sft_metrics = _read_records(sft_path) if sft_path.is_file() else []
    samples = _read_records(path / SAMPLES_FILE) if (path / SAMPLES_FILE).is_file() else []
    summary_path, config_path = path / "summary.json", path / "config.yaml"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    config_text = config_path.read_text() if config_path.is_file() else ""
    return RunData(path, metrics, sft_metrics, samples, summary, config_text)


def _read_records(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except json.JSONDecodeError as error:
        raise ConfigError(f"rlhf report: {str(path)!r} is not valid JSON lines ({error})") from None


def series(records: list[dict], key: str, x: str = "step") -> tuple[list[int], list[float]]:
    """(x values, values) of `key` over the records that hold a number for it (null: skipped);
    `x` is the step key (`sft/step` for SFT records)."""
    points = [(r.get(x), r[key]) for r in records if _is_number(r.get(key)) and _is_number(r.get(x))]
    return [step for step, _ in points], [float(value) for _, value in points]


def metric_keys(records: list[dict], x: str = "step") -> list[str]:
    """Every key of the records except the step key `x`, in first-seen order."""
    return [key for key in dict.fromkeys(k for r in records for k in r) if key != x]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
