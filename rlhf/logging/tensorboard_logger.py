"""The tensorboard backend: scalars and sample generations (as text) in `<run>/tensorboard/`.

Needs the `tensorboard` package (torch's SummaryWriter writes the event files with it);
imported only when `trainer.loggers` selects tensorboard. View with
`tensorboard --logdir <run>/tensorboard`.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.logging.base import numeric

LOG_DIR = "tensorboard"


class TensorBoardLogger:
    """Every numeric metric as a scalar at its step; samples as one markdown text per step."""

    def __init__(self, output_dir: Path, first_step: int = 1):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step writes a session-start event. TensorBoard treats every start after the
        # first as a restart and hides the events from its step on: the steps a resumed run
        # logged after its checkpoint then show once, with the re-run's values.
        purge_step = first_step if first_step > 1 else 0
        self.writer = SummaryWriter(log_dir=str(Path(output_dir) / LOG_DIR), purge_step=purge_step)

    def log(self, step: int, metrics: dict) -> None:
        for key, value in numeric(metrics).items():
            self.writer.add_scalar(key, value, step)  # NaN and inf are valid scalars here
        self.writer.flush()

    def log_samples(self, step: int, samples: list[dict]) -> None:
        self.writer.add_text("samples", samples_markdown(samples), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def samples_markdown(samples: list[dict]) -> str:
    """Markdown of sample generations: a header line per sample, prompt and response as an
    indented code block (no fence that the text itself could close)."""
    parts = []
    for index, sample in enumerate(samples):
        by_source = ", ".join(f"{name} {score:.3g}" for name, score in sample.get("rewards", {}).items())
        header = f"**sample {index}** reward {sample['reward']:.3g}" + (f" ({by_source})" if by_source else "")
        header += f" · ground truth `{sample.get('ground_truth')}`"
        if sample.get("data_source") is not None:
            header += f" · {sample['data_source']}"
        text = f"{sample['prompt']}{sample['response']}"
        parts.append(header + "\n\n" + "\n".join("    " + line for line in text.splitlines() or [""]))
    return "\n\n".join(parts)
