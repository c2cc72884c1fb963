"""Console output: a progress bar with ETA (on a terminal) and compact metric lines."""

from __future__ import annotations

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
    """Progress bar on a terminal; every `log_every` steps a metrics line (always printed)."""

    def __init__(self, total_steps: int, log_every: int = 1):
        self.console = Console(highlight=False, soft_wrap=True)
        self.log_every = max(1, log_every)
        self.progress = Progress(
            TextColumn("[bold]RL"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, transient=True, disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("train", total=total_steps)

    def __enter__(self) -> "ConsoleLogger":
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def step(self, metrics: dict) -> None:
        self.progress.advance(self.task)
        if metrics.get("step", 0) % self.log_every == 0 or "eval/accuracy" in metrics:
            self.console.print(format_metrics(metrics))

    def print(self, text: str) -> None:
        self.console.print(text)
