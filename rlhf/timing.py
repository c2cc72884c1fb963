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


def phase_shares(seconds: dict[str, float], step_seconds: float) -> dict[str, float]:
    """`time/<phase>_share`: each phase's seconds / the step's seconds. Phases do not overlap,
    so the shares sum to at most 1; the rest is untimed work between the phases."""
    if step_seconds <= 0:
        return {}
    return {f"time/{name}_share": value / step_seconds for name, value in seconds.items()}
