"""A deliberately corrupted weight sync is caught: under ZeRO-3 the rollout
engine generates with its own copy of the weights, refreshed bucket by bucket after each
update; a bucket that arrives wrong makes the probe check stop the run, naming both engines."""

import pytest

from conftest import TINY_RL, write_recipe
from rlhf.cli.main import main
from rlhf.engines.deepspeed_engine import DeepSpeedEngine
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def test_a_corrupted_bucket_stops_the_run_with_the_gap(tmp_path, monkeypatch, capsys):
    pytest.importorskip("deepspeed")
    honest = DeepSpeedEngine.named_weights

    def corrupted(self):
        for name, tensor in honest(self):
            # one weight matrix arrives scaled: what a wrong shard offset or dtype would do
            yield name, tensor * 1.5 if name.endswith("layers.1.mlp.down_proj.weight") else tensor

    monkeypatch.setattr(DeepSpeedEngine, "named_weights", corrupted)
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=3, backend="local", workers=1, steps=3))
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"trainer.output_dir={out}", "sync.bucket_mb=1"]) == 1
    error = capsys.readouterr().err
    assert "weight sync check failed: rollout engine HFRolloutEngine vs trainer DeepSpeedEngine disagree" in error
    assert "sync.tolerance 0.001" in error
    # the failure happened at the first sync: no step was logged as if it were fine
    assert [record["step"] for record in read_jsonl(out / "metrics.jsonl")] == [0]
