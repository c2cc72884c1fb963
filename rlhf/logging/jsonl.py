"""Append-only JSON-lines files: `metrics.jsonl` (one record per step) and `samples.jsonl`
(one sample generation per line), flushed after every record."""

from __future__ import annotations

import json
import math
from pathlib import Path

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"


class JsonlWriter:
    """One JSON object per line; non-finite floats are written as null (valid JSON)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = path.open("a")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(_finite_or_null(record), default=str) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class JsonlLogger:
    """The jsonl backend: `<run>/metrics.jsonl` (`{"step": s, **metrics}` per step, what resume,
    `rlhf export` and `rlhf report` read) and `<run>/samples.jsonl`, opened at the first sample."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.metrics = JsonlWriter(self.output_dir / METRICS_FILE)
        self.samples: JsonlWriter | None = None

    def log(self, step: int, metrics: dict) -> None:
        self.metrics.write({"step": step, **metrics})

    def log_samples(self, step: int, samples: list[dict]) -> None:
        if self.samples is None:
            self.samples = JsonlWriter(self.output_dir / SAMPLES_FILE)
        for sample in samples:
            self.samples.write({"step": step, **sample})

    def close(self) -> None:
        self.metrics.close()
        if self.samples is not None:
            self.samples.close()


def _finite_or_null(value):
    """`value` with every non-finite float, also inside dicts and lists, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_null(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(item) for item in value]
    return value


def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSON-lines file. A last line that a kill cut short in the middle of a
    write (no newline, not valid JSON) is left out: the records before it are intact."""
    *complete, last = Path(path).read_text().split("\n")
    records = [json.loads(line) for line in complete if line.strip()]
    if last.strip():
        try:
            records.append(json.loads(last))
        except json.JSONDecodeError:
            pass  # written only in part
    return records
