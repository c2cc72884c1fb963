"""The MLflow backend: metrics at their step, the resolved recipe and sample generations as
artifacts.

Imported only when `trainer.loggers` selects mlflow (`pip install mlflow-skinny` suffices).
The tracking URI is MLFLOW_TRACKING_URI when set, else the file store `<run>/mlruns` (view it
with `mlflow ui --backend-store-uri <run>/mlruns`). MLflow 3 refuses file stores unless
MLFLOW_ALLOW_FILE_STORE is true; a file-store URI sets it (when unset) for this process,
since the database backends it recommends need the full `mlflow` package.

The run lives in experiment `trainer.project` under the name `trainer.experiment_name`. Its id
is kept in `<run>/mlflow_run_id` and a resumed training run logs into the same run; steps
re-run after a crash then hold two values each (MLflow keeps every logged point).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from rlhf.logging.base import finite

RUN_ID_FILE = "mlflow_run_id"
_INVALID_KEY_CHARACTERS = re.compile(r"[^\w./\- :]")
"""MLflow metric names allow letters, digits, _ - . / space and colon only."""


def tracking_uri(output_dir: Path) -> str:
    """MLFLOW_TRACKING_URI, or the file store `<run>/mlruns`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(output_dir).resolve() / "mlruns").as_uri()


def metric_key(key: str) -> str:
    """`key` with the characters MLflow rejects replaced by '_' (`eval/pass@k` -> `eval/pass_k`)."""
    return _INVALID_KEY_CHARACTERS.sub("_", key)


class MlflowLogger:
    """One MLflow run per run directory, written through an explicit client (no global state)."""

    def __init__(self, output_dir: Path, project: str, name: str, first_step: int = 1):
        uri = tracking_uri(output_dir)
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        self.Metric = Metric
        self.client = MlflowClient(tracking_uri=uri)
        self.output_dir = Path(output_dir)
        self.run_id = self._resumed_run_id() if first_step > 1 else None
        if self.run_id is None:
            experiment = self.client.get_experiment_by_name(project)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
            self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
            (self.output_dir / RUN_ID_FILE).write_text(self.run_id + "\n")
            config = self.output_dir / "config.yaml"
            if config.exists():
                self.client.log_artifact(self.run_id, str(config))

    def _resumed_run_id(self) -> str | None:
        """The run this run directory logged to before, if the tracking store still has it."""
        id_file = self.output_dir / RUN_ID_FILE
        if not id_file.exists():
            return None
        run_id = id_file.read_text().strip()
        try:
            self.client.get_run(run_id)
        except Exception:  # noqa: BLE001 - deleted or another store: start a new run
            return None
        return run_id

    def log(self, step: int, metrics: dict) -> None:
        timestamp = int(time.time() * 1000)
        # non-finite values are dropped: not every MLflow store accepts them (metrics.jsonl has null)
        batch = [self.Metric(metric_key(key), value, timestamp, step) for key, value in finite(metrics).items()]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_samples(self, step: int, samples: list[dict]) -> None:
        self.client.log_dict(self.run_id, {"step": step, "samples": samples}, f"samples/step_{step:06d}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)
