"""What a report reads from a run directory: metrics.jsonl (required), samples.jsonl,
summary.json and config.yaml (each optional)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.logging.jsonl import METRICS_FILE, SAMPLES_FILE, read_jsonl


@dataclass
class RunData:
    """The records of one run, as written by the jsonl logger and the loop."""

    directory: Path
    metrics: list[dict]
    """One record per step (step 0: the evaluation before RL)."""
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
    metrics_path = path / METRICS_FILE
    if not metrics_path.is_file():
        raise ConfigError(f"rlhf report: {str(path)!r} is not a run directory: it has no {METRICS_FILE}")
    metrics = _read_records(metrics_path)
    samples = _read_records(path / SAMPLES_FILE) if (path / SAMPLES_FILE).is_file() else []
    summary_path, config_path = path / "summary.json", path / "config.yaml"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    config_text = config_path.read_text() if config_path.is_file() else ""
    return RunData(path, metrics, samples, summary, config_text)


def _read_records(path: Path) -> list[dict]:
    try:
        return read_jsonl(path)
    except json.JSONDecodeError as error:
        raise ConfigError(f"rlhf report: {str(path)!r} is not valid JSON lines ({error})") from None


def series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of `key` over the records that hold a number for it (null: skipped)."""
    points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
    return [step for step, _ in points], [float(value) for _, value in points]


def metric_keys(records: list[dict]) -> list[str]:
    """Every key of the records except `step`, in first-seen order."""
    return [key for key in dict.fromkeys(k for r in records for k in r) if key != "step"]
