"""Weight-sync verification end to end: `rlhf train quickstart` logs how far the rollout
engine's logprobs are from the trainer's, and runs the probe check after the syncs."""

from pathlib import Path

import pytest

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.logging.jsonl import read_jsonl
from test_algorithm_recipes import SMALL


def test_quickstart_logs_rollout_logprob_diff_and_checks_the_sync(tmp_path: Path):
    out = tmp_path / "quickstart"
    # two epochs: old logprobs are computed, so the rollout engine's can be compared with them
    args = [*SMALL, "actor.ppo_epochs=2", "sync.check_every=1", "rollout.logprobs=true"]
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")[1:]
    assert len(records) == 2
    for record in records:
        assert 0.0 <= record["rollout/logprob_diff"] < 1e-4, record["rollout/logprob_diff"]
        assert record["rollout/logprob_diff"] <= record["rollout/logprob_diff_max"] < 1e-3
        assert 0.0 <= record["sync/probe_logprob_diff_max"] < 1e-3


def test_sync_check_every_two_syncs(tmp_path: Path):
    out = tmp_path / "every2"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, "sync.check_every=2"]) == 0
    first, second = read_jsonl(out / "metrics.jsonl")[1:]
    assert "sync/probe_logprob_diff_max" not in first and "sync/probe_logprob_diff_max" in second


@pytest.mark.parametrize("override, key", [("sync.check_every=-1", "sync.check_every"), ("sync.tolerance=0", "sync.tolerance"), ("sync.probe_size=0", "sync.probe_size")])
def test_sync_keys_are_validated(override: str, key: str):
    with pytest.raises(ConfigError, match=key):
        load_recipe(None, ["model.path=org/some-model", override])
