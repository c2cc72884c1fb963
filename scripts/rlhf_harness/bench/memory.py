"""Peak memory per phase of a step, inside one process: the benchmark's arms wrap
their phases (generate, update, logprob passes) in `PhasePeaks.phase(name)`.

Two sources, one code path:
    cpu   resident set size (RSS) of this process, sampled by a background thread every
          `interval_s` (5 ms) and at every phase boundary; a phase's peak is the largest sample
          while it was open. Linux has no per-phase peak of its own (VmHWM only resets through
          /proc/self/clear_refs), and RSS includes what the allocator caches: the numbers are
          what the operating system must provide, not what tensors hold.
    cuda  `torch.cuda.max_memory_allocated` (bytes held by tensors), reset at every phase
          boundary; the peak since the last boundary is folded into every open phase first,
          so nested phases stay right. Every boundary also waits for the kernels queued so far
          (`torch.cuda.synchronize`), so a phase timed around its window (`MemoryPhaseTimer`)
          gets the time of its own kernels, not of the launches alone.
Phases may nest and repeat: a phase's value is the largest over all its windows since the last
`pop()`. Values are MiB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rlhf_harness.procs import MIB, rss_bytes


class PhasePeaks:
    """Peak memory of named phases (`kind` "rss" on the CPU, "cuda_allocated" on a GPU)."""

    def __init__(self, device: str = "cpu", interval_s: float = 0.005):
        self.kind = "cuda_allocated" if device.startswith("cuda") else "rss"
        self.open_windows: dict[int, tuple[str, list[int]]] = {}
        """id -> (phase name, [peak bytes]) of the phases open now."""
        self.peaks: dict[str, int] = {}
        """Phase name -> peak bytes since the last `pop()` (closed windows)."""
        self.lock = threading.Lock()
        self.next_id = 0
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        if self.kind == "rss":
            self.thread = threading.Thread(target=self._sample_forever, args=(interval_s,), name="rlhf-bench-rss", daemon=True)
            self.thread.start()

    def _current(self) -> int:
        """The memory to fold into the open windows now (and, on CUDA, reset the peak)."""
        if self.kind == "rss":
            return rss_bytes() or 0
        import torch

        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        return peak

    def _fold(self) -> None:
        with self.lock:
            value = self._current()
            for _, peak in self.open_windows.values():
                peak[0] = max(peak[0], value)

    def _sample_forever(self, interval_s: float) -> None:
        while not self.stopping.wait(interval_s):
            self._fold()

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the peak memory while the body runs under `name`."""
        window = self.open(name)
        try:
            yield
        finally:
            self.close(window)

    def open(self, name: str) -> int:
        """Start a window of phase `name` (for phases that no single `with` can enclose);
        returns its handle for `close`."""
        self._fold()  # what came before belongs to the windows already open
        with self.lock:
            window, self.next_id = self.next_id, self.next_id + 1
            self.open_windows[window] = (name, [self._current()])
        return window

    def close(self, window: int) -> None:
        """End a window `open` returned; its peak joins its phase's."""
        self._fold()
        with self.lock:
            name, peak = self.open_windows.pop(window)
            self.peaks[name] = max(self.peaks.get(name, 0), peak[0])

    def pop(self) -> dict[str, float]:
        """{phase: peak MiB} of the windows closed since the last call; resets."""
        with self.lock:
            peaks, self.peaks = self.peaks, {}
        return {name: round(value / MIB, 2) for name, value in peaks.items()}

    def stop(self) -> None:
        """End the sampling thread (idempotent)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None


class MemoryPhaseTimer:
    """A :class:`rlhf.timing.PhaseTimer` whose phases also record their peak memory:
    what `rl_step` takes as its timer (it uses `phase`, `seconds` and `pop`)."""

    def __init__(self, timer, peaks: PhasePeaks):
        self.timer = timer
        self.peaks = peaks

    @property
    def seconds(self) -> dict[str, float]:
        return self.timer.seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        # the memory window inside the timed one: on CUDA its closing synchronisation is timed
        with self.timer.phase(name), self.peaks.phase(name):
            yield

    def pop(self) -> dict[str, float]:
        """The timer's `time/<phase>_s` metrics (the peaks are popped from `peaks`)."""
        return self.timer.pop()
