"""Append-only JSON-lines metric files, flushed after every record."""

from __future__ import annotations

import json
import math
from pathlib import Path


class JsonlWriter:
    """One JSON object per line; non-finite floats are written as null (valid JSON)."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = path.open("a")

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.handle.write(json.dumps(clean) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSON-lines file."""
    with Path(path).open() as handle:
        return [json.loads(line) for line in handle if line.strip()]
