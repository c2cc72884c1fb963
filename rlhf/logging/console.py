"""Console output: a progress bar with ETA (on a terminal) and compact metric lines (RL steps
and the SFT stage)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Metric keys shown in the compact line, with their short labels.
SHOWN = (
    ("reward/mean", "reward"),
    ("eval/accuracy", "eval_acc"),
    ("response_length/mean", "len"),
    ("actor/pg_loss", "pg"),
    ("actor/entropy", "ent"),
    ("actor/grad_norm", "gnorm"),
    ("time/step_s", "s/step"),
)


def format_metrics(metrics: dict) -> str:
    """`step 12 | reward 0.41 | len 3.1 | ...` for the keys present in `metrics`."""
    parts = [f"step {metrics['step']}"] if "step" in metrics else []
    parts += [f"{label} {metrics[key]:.4g}" for key, label in SHOWN if key in metrics]
    return " | ".join(parts)


class ConsoleLogger:
    """Progress bar with ETA on a terminal; every `log_every` steps (and after each evaluation)
    a metrics line, printed also when the output is not a terminal."""

    def __init__(self, total_steps: int, log_every: int = 1, first_step: int = 1):
        self.console = Console(highlight=False, soft_wrap=True)
        self.log_every = max(1, log_every)
        self.progress = Progress(
            TextColumn("[bold]RL"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not self.console.is_terminal,
        )
        # a resumed run's bar starts where its checkpoint left off
        self.task = self.progress.add_task("train", total=total_steps, completed=first_step - 1)
        self.progress.start()

    def log(self, step: int, metrics: dict) -> None:
        if step > 0:  # step 0 is the evaluation before RL
            self.progress.advance(self.task)
        if (step > 0 and step % self.log_every == 0) or "eval/accuracy" in metrics:
            self.console.print(format_metrics({"step": step, **metrics}))

    def log_samples(self, step: int, samples: list[dict]) -> None:
        """Samples go to samples.jsonl and the dashboards, not to the console."""

    def print(self, text: str) -> None:
        self.console.print(text)

    def close(self) -> None:
        self.progress.stop()


class SFTProgress:
    """Console lines of the SFT stage, which can run for minutes before RL prints anything:
    `SFT step 120/2000 | loss 0.94 | val_acc 0.148 (target 0.3) | 23 s`, at a validation check
    when `every_s` seconds have passed since the last line (the first check always), and
    between checks when twice that has. Console only: the records go to sft_metrics.jsonl."""

    def __init__(self, max_steps: int, target: float, every_s: float = 5.0, console: Console | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.max_steps, self.target, self.every_s = max_steps, target, every_s
        self.start = time.monotonic()
        self.last_line: float | None = None
        self.loss: float | None = None
        self.accuracy: float | None = None

    def log(self, record: dict) -> None:
        """Take one SFT record (a step's or a validation's) and print a line when it is time."""
        self.loss = record.get("sft/loss", self.loss)
        validated = "sft/val_accuracy" in record
        self.accuracy = record.get("sft/val_accuracy", self.accuracy)
        now = time.monotonic()
        since = None if self.last_line is None else now - self.last_line
        if (validated and (since is None or since >= self.every_s)) or (since is not None and since >= 2 * self.every_s):
            self.last_line = now
            self.console.print(self.line(record["sft/step"], now))

    def line(self, step: int, now: float) -> str:
        parts = [f"SFT step {step}/{self.max_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.accuracy is not None:
            parts.append(f"val_acc {self.accuracy:.3f} (target {self.target:g})")
        return " | ".join([*parts, f"{now - self.start:.0f} s"])
