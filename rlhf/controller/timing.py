"""Wall-clock time per phase of a step, reported as `time/<phase>_s`."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


class PhaseTimer:
    """Accumulates seconds per named phase until `pop()`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        """The phases timed since the last call, as metrics; resets."""
        metrics = {f"time/{name}_s": value for name, value in self.seconds.items()}
        self.seconds = {}
        return metrics
