"""A tiny training run with every logger, a crash after the checkpoint of step 2 and a resume:
metrics.jsonl, samples.jsonl, tensorboard, wandb (offline) and mlflow (file
store) all hold the run, each from the resume point on; throughput and phase shares."""

import json
import math
from pathlib import Path

import pytest
import tensorboard_events
from tiny_helpers import interrupt_rl_step
from wandb_records import history, offline_runs

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.controller.preflight import load_checked_recipe
from rlhf.controller import loop
from rlhf.logging.jsonl import read_jsonl

ARGS = [
    "sft.enabled=false", "trainer.total_steps=4", "trainer.save_every=2", "trainer.num_threads=1", "data.eval.size=8",
    "data.train_batch_size=3", "rollout.n=2", "actor.mini_batch_size=6", "actor.micro_batch_size=6", "algorithm.kl.coef=0.01",
    "trainer.sample_every=1", "trainer.num_samples=2", "trainer.loggers=[console,jsonl,tensorboard,wandb,mlflow]",
    "trainer.experiment_name=crash-and-resume",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Steps 1-3 logged, a crash in step 4, a resume from the checkpoint of step 2."""
    out = tmp_path_factory.mktemp("logging") / "run"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_ALLOW_FILE_STORE": "true"}.items():
            patch.setenv(name, value)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        real_step = loop.rl_step
        interrupt_rl_step(patch, 4)
        assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 1
        assert [r["step"] for r in read_jsonl(out / "samples.jsonl")] == [1, 1, 2, 2, 3, 3]
        patch.setattr(loop, "rl_step", real_step)
        assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    return out


def test_metrics_jsonl_and_samples_jsonl_hold_each_step_once(run_dir):
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [0, 1, 2, 3, 4]
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert [s["step"] for s in samples] == [1, 1, 2, 2, 3, 3, 4, 4]  # the crashed run's step 3 was dropped
    for sample in samples:
        assert set(sample) == {"step", "prompt", "response", "reward", "rewards", "ground_truth", "data_source"}
        left, right = sample["prompt"].removesuffix("=").split("+")
        assert sample["ground_truth"] == str(int(left) + int(right)) and sample["data_source"] == "arithmetic"
        assert sample["reward"] == sample["rewards"]["arithmetic"]  # one source of weight 1
    assert samples[0]["prompt"] != samples[1]["prompt"]  # different prompts before a second response of one


def test_throughput_is_tokens_per_second_per_device_and_shares_split_the_step(run_dir):
    for record in read_jsonl(run_dir / "metrics.jsonl")[1:]:
        seconds = record["time/step_s"]
        assert record["perf/throughput"] == pytest.approx(record["perf/total_tokens"] / seconds)  # one device
        assert record["perf/throughput"] == pytest.approx(record["perf/tokens_per_s"])
        shares = {k: v for k, v in record.items() if k.endswith("_share")}
        assert {"time/generate_share", "time/update_share", "time/ref_logprobs_share"} <= set(shares)
        assert all(0.0 <= v <= 1.0 for v in shares.values()) and sum(shares.values()) <= 1.0 + 1e-6
        for key, share in shares.items():
            assert share == pytest.approx(record[key.removesuffix("_share") + "_s"] / seconds)
        assert "time/eval_share" not in shares  # evaluation runs after the step


def test_tensorboard_shows_one_value_per_step(run_dir):
    records = read_jsonl(run_dir / "metrics.jsonl")
    shown = tensorboard_events.scalars(run_dir / "tensorboard", "reward/mean")
    assert shown == [(r["step"], pytest.approx(r["reward/mean"], rel=1e-5)) for r in records[1:]]  # the crashed run's step 3 is purged
    assert [step for step, _ in tensorboard_events.texts(run_dir / "tensorboard", "samples")] == [1, 2, 3, 4]


def test_wandb_offline_runs_continue_one_run_with_the_resumed_steps(run_dir):
    first, second = offline_runs(run_dir)
    assert first.name == second.name
    records = {r["step"]: r for r in read_jsonl(run_dir / "metrics.jsonl")}
    assert sorted(history(first)) == [0, 1, 2, 3] and sorted(history(second)) == [3, 4]
    for step, row in history(second).items():
        assert json.loads(row["reward/mean"]) == pytest.approx(records[step]["reward/mean"])
        assert json.loads(row["perf/throughput"]) == pytest.approx(records[step]["perf/throughput"])


def test_mlflow_run_holds_every_step_in_one_run(run_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(run_dir / "mlruns").as_uri())
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.info.run_name == "crash-and-resume" and run.info.status == "FINISHED"
    points = client.get_metric_history(run_id, "reward/mean")
    final = {m.step: m.value for m in sorted(points, key=lambda m: m.timestamp)}  # step 3 twice: the re-run's last
    records = read_jsonl(run_dir / "metrics.jsonl")
    assert final == pytest.approx({r["step"]: r["reward/mean"] for r in records[1:]})
    assert not math.isnan(client.get_metric_history(run_id, "eval/accuracy")[-1].value)


def test_loggers_must_include_jsonl_and_names_are_checked(tmp_path):
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
    with pytest.raises(ConfigError, match="trainer.loggers: must include jsonl"):
        load_checked_recipe(recipe, ["trainer.loggers=[console]"])
    with pytest.raises(ConfigError, match=r"trainer.loggers.2: unknown value 'tensorbord' \(did you mean 'tensorboard'"):
        load_checked_recipe(recipe, ["trainer.loggers=[console,jsonl,tensorbord]"])


def test_a_missing_logger_package_stops_train_before_any_work(tmp_path, monkeypatch, capsys):
    from rlhf.logging import factory

    real = factory.importlib.util.find_spec
    monkeypatch.setattr(factory.importlib.util, "find_spec", lambda module, *a: None if module == "mlflow" else real(module, *a))
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "trainer.loggers=[console,jsonl,mlflow]"]) == 2
    assert "trainer.loggers: mlflow-skinny not installed; pip install mlflow-skinny" in capsys.readouterr().err
    assert not out.exists()
