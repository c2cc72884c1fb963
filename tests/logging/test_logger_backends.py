"""Each logging backend for real: what it writes is read back with the backend's
own reader; NaN and inf never crash one; a resumed logger continues the same run."""

import json
import math

import pytest
import tensorboard_events
from wandb_records import history, offline_runs

from rlhf.config.errors import ConfigError
from rlhf.logging import factory
from rlhf.logging.base import Loggers
from rlhf.logging.console import ConsoleLogger
from rlhf.logging.jsonl import JsonlLogger, read_jsonl
from rlhf.logging.mlflow_logger import MlflowLogger, metric_key
from rlhf.logging.tensorboard_logger import TensorBoardLogger, samples_markdown
from rlhf.logging.wandb_logger import WandbLogger

SAMPLES = [
    {"prompt": "12+30=", "response": "42<eos>", "reward": 1.0, "rewards": {"arithmetic": 1.0}, "ground_truth": "42", "data_source": "arithmetic"},
    {"prompt": "<b>x</b>|", "response": "```\nno", "reward": 0.0, "rewards": {"arithmetic": 0.0}, "ground_truth": "7"},
]


def step_metrics(step: int) -> dict:
    return {"reward/mean": 0.1 * step, "eval/pass@4": 0.5, "actor/grad_norm": math.nan, "perf/throughput": math.inf, "perf/total_tokens": 100}


def test_jsonl_writes_metrics_and_samples_with_null_for_non_finite(tmp_path):
    logger = JsonlLogger(tmp_path)
    logger.log(1, step_metrics(1))
    assert not (tmp_path / "samples.jsonl").exists()  # opened at the first sample
    logger.log_samples(1, [{**SAMPLES[0], "rewards": {"arithmetic": math.nan}}])
    logger.close()
    [record] = read_jsonl(tmp_path / "metrics.jsonl")
    assert record == {"step": 1, "reward/mean": 0.1, "eval/pass@4": 0.5, "actor/grad_norm": None, "perf/throughput": None, "perf/total_tokens": 100}
    [sample] = read_jsonl(tmp_path / "samples.jsonl")
    assert sample["step"] == 1 and sample["prompt"] == "12+30=" and sample["rewards"] == {"arithmetic": None}


def test_console_prints_every_log_every_steps_and_after_evaluations(capsys):
    console = ConsoleLogger(total_steps=4, log_every=2)
    console.log(0, {"data/train_rows": 100})  # the record before RL: printed only with an evaluation
    for step in range(1, 5):
        console.log(step, {"reward/mean": 0.5, **({"eval/accuracy": 0.25} if step == 1 else {}), "actor/grad_norm": math.nan})
    console.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["step 1 | reward 0.5 | eval_acc 0.25 | gnorm nan", "step 2 | reward 0.5 | gnorm nan", "step 4 | reward 0.5 | gnorm nan"]


def test_tensorboard_scalars_text_and_purge_on_resume(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    for step in range(4):
        logger.log(step, step_metrics(step))
    logger.log_samples(2, SAMPLES)
    logger.close()
    resumed = TensorBoardLogger(tmp_path, first_step=3)  # steps 3.. re-run after a checkpoint at 2
    resumed.log(3, {"reward/mean": 9.0})
    resumed.close()
    logdir = tmp_path / "tensorboard"
    assert [(step, round(value, 5)) for step, value in tensorboard_events.scalars(logdir, "reward/mean")] == [(0, 0.0), (1, 0.1), (2, 0.2), (3, 9.0)]
    assert math.isnan(tensorboard_events.scalars(logdir, "actor/grad_norm")[0][1])
    assert math.isinf(tensorboard_events.scalars(logdir, "perf/throughput")[0][1])
    [(step, text)] = tensorboard_events.texts(logdir, "samples")
    assert step == 2 and "reward 1 (arithmetic 1)" in text and "    <b>x</b>|" in text


def test_samples_markdown_indents_every_line_as_code():
    text = samples_markdown(SAMPLES)
    assert "    <b>x</b>|```\n    no" in text and "\n```" not in text  # a fence in a response cannot break out


def test_wandb_offline_run_holds_the_metrics_and_resumes_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(tmp_path, "rlhf-tests", "run-a", {"trainer": {"seed": 0}})
    logger.log(1, step_metrics(1))
    logger.log_samples(1, SAMPLES)
    logger.log(2, step_metrics(2))
    logger.close()
    resumed = WandbLogger(tmp_path, "rlhf-tests", "run-a", {}, first_step=3)
    resumed.log(3, {"reward/mean": 0.3})
    resumed.close()
    first, second = offline_runs(tmp_path)
    assert first.name == second.name  # run-<same id>.wandb
    rows = history(first)
    assert json.loads(rows[1]["reward/mean"]) == pytest.approx(0.1) and json.loads(rows[2]["reward/mean"]) == pytest.approx(0.2)
    assert rows[1]["actor/grad_norm"] == "NaN" and rows[1]["eval/pass@4"] == "0.5"
    assert json.loads(rows[1]["samples/nrows"]) == 2
    assert json.loads(history(second)[3]["reward/mean"]) == pytest.approx(0.3)
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/samples_*.table.json"))
    assert "<b>x</b>|" in json.loads(tables[0].read_text())["data"][1][2]


def test_mlflow_file_store_metrics_samples_and_resume(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = (tmp_path / "store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    (tmp_path / "config.yaml").write_text("trainer: {seed: 0}\n")
    logger = MlflowLogger(tmp_path, "rlhf-tests", "run-a")
    logger.log(1, step_metrics(1))
    logger.log(2, step_metrics(2))
    logger.log_samples(2, SAMPLES)
    logger.close()
    resumed = MlflowLogger(tmp_path, "rlhf-tests", "run-a", first_step=3)
    resumed.log(3, {"reward/mean": 0.3})
    resumed.close()
    assert resumed.run_id == logger.run_id
    client = MlflowClient(tracking_uri=uri)
    points = sorted((m.step, round(m.value, 5)) for m in client.get_metric_history(logger.run_id, "reward/mean"))
    assert points == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert [m.value for m in client.get_metric_history(logger.run_id, metric_key("eval/pass@4"))] == [0.5, 0.5]
    assert client.get_metric_history(logger.run_id, "actor/grad_norm") == []  # non-finite values are dropped
    artifacts = {a.path for a in client.list_artifacts(logger.run_id)} | {a.path for a in client.list_artifacts(logger.run_id, "samples")}
    assert {"config.yaml", "samples/step_000002.json"} <= artifacts
    assert client.get_run(logger.run_id).data.tags["mlflow.runName"] == "run-a"


def test_loggers_close_every_backend_even_when_one_fails():
    closed = []

    class Backend:
        def __init__(self, name, fails=False):
            self.name, self.fails = name, fails

        def close(self):
            closed.append(self.name)
            if self.fails:
                raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        Loggers([Backend("a", fails=True), Backend("b")]).close()
    assert closed == ["a", "b"]


@pytest.mark.parametrize("name, package", [("wandb", "wandb"), ("mlflow", "mlflow-skinny"), ("tensorboard", "tensorboard")])
def test_a_missing_backend_package_is_a_config_error_with_the_pip_command(monkeypatch, name, package):
    real = factory.importlib.util.find_spec
    monkeypatch.setattr(factory.importlib.util, "find_spec", lambda module, *a: None if module == factory.PACKAGES[name][0] else real(module, *a))
    with pytest.raises(ConfigError, match=rf"trainer.loggers: {package} not installed; pip install {package}"):
        factory.check_loggers(["console", "jsonl", name])
