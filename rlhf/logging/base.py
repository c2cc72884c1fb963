"""The interface every metric backend implements, and the list that fans a run's records out
to the backends `trainer.loggers` selects.

A metrics record is a flat dict of numbers keyed like `reward/mean`; a sample is one
generation of a step as :func:`rlhf.controller.samples.sample_generations` makes it (prompt,
response, reward, rewards by source, ground truth, data_source when present).
"""

from __future__ import annotations

import math
from typing import Protocol


class Logger(Protocol):
    """One backend: console, jsonl, tensorboard, wandb or mlflow."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record the metrics of RL step `step` (0: the evaluation before RL)."""

    def log_samples(self, step: int, samples: list[dict]) -> None:
        """Record sample generations of step `step` (a backend may ignore them)."""

    def close(self) -> None:
        """Flush and release files, processes and connections."""


class Loggers:
    """Every selected backend behind one `log` / `log_samples` / `close`; a context manager
    that closes them all, also when the run fails."""

    def __init__(self, backends: list[Logger]):
        self.backends = backends

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for backend in self.backends:
            backend.log(step, metrics)

    def log_samples(self, step: int, samples: list[dict]) -> None:
        if samples:
            for backend in self.backends:
                backend.log_samples(step, samples)

    def close(self) -> None:
        """Close every backend, even when one of them fails (the first error is raised)."""
        errors = []
        for backend in self.backends:
            try:
                backend.close()
            except Exception as error:  # noqa: BLE001 - the others must still close
                errors.append(error)
        if errors:
            raise errors[0]

    def __enter__(self) -> Loggers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def numeric(metrics: dict) -> dict[str, float]:
    """The entries of `metrics` that are numbers (bools and None dropped), as floats."""
    return {key: float(value) for key, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)}


def finite(metrics: dict) -> dict[str, float]:
    """The numeric entries of `metrics` that are finite (for backends that reject NaN / inf)."""
    return {key: value for key, value in numeric(metrics).items() if math.isfinite(value)}
