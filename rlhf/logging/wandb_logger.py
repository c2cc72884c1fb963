"""The Weights & Biases backend: metrics at their step, sample generations as a table.

Imported only when `trainer.loggers` selects wandb. The run goes to project `trainer.project`
under the name `trainer.experiment_name` (default: the run directory's name), with the
resolved recipe as its config; wandb keeps its files in `<run>/wandb/`. WANDB_MODE (online,
offline, disabled), WANDB_API_KEY and the other WANDB_* variables apply as usual.

Resume: the wandb run id is kept in `<run>/wandb/rlhf_run_id`, and a resumed training run
continues the same wandb run (resume="allow"). wandb accepts only increasing steps, so steps
that were logged after the checkpoint and before a crash keep their first values there
(metrics.jsonl and tensorboard show the re-run's).
"""

from __future__ import annotations

import secrets
from pathlib import Path

from rlhf.logging.base import numeric

RUN_ID_FILE = "rlhf_run_id"


class WandbLogger:
    """One wandb run per run directory."""

    def __init__(self, output_dir: Path, project: str, name: str, config: dict, first_step: int = 1):
        import wandb

        self.wandb = wandb
        directory = Path(output_dir) / "wandb"
        directory.mkdir(parents=True, exist_ok=True)
        id_file = directory / RUN_ID_FILE
        if first_step > 1 and id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = secrets.token_hex(6)  # wandb ids: lowercase letters and digits
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=project, name=name, id=run_id, resume="allow", dir=str(output_dir), config=config)

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(numeric(metrics), step=step)  # wandb stores NaN and inf

    def log_samples(self, step: int, samples: list[dict]) -> None:
        sources = sorted({name for sample in samples for name in sample.get("rewards", {})})
        columns = ["step", "data_source", "prompt", "response", "ground_truth", "reward", *(f"reward/{name}" for name in sources)]
        rows = [
            [step, str(sample.get("data_source") or ""), sample["prompt"], sample["response"], str(sample.get("ground_truth")), sample["reward"],
             *(sample.get("rewards", {}).get(name) for name in sources)]
            for sample in samples
        ]
        self.run.log({"samples": self.wandb.Table(columns=columns, data=rows)}, step=step)

    def close(self) -> None:
        self.run.finish()
