"""`actor.off_policy`: names, bounds and the logprobs a correction needs are checked before a
run starts; a bad value exits 2 naming the key and writes nothing."""

from __future__ import annotations

import pytest

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.controller.preflight import load_checked_recipe


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_checked_recipe(None, ["model.path=org/some-model", *overrides])
    return str(info.value)


@pytest.mark.parametrize("name", ["none", "tis", "mis", "icepop", "decoupled"])
def test_every_correction_is_accepted(name):
    load_checked_recipe(None, ["model.path=org/some-model", f"actor.off_policy.correction={name}"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["actor.off_policy.correction=tsi"], "actor.off_policy.correction: unknown value 'tsi' (did you mean 'tis'?"),
    (["actor.off_policy.mis_ratio=arithmetic"], "actor.off_policy.mis_ratio: unknown value 'arithmetic'"),
    (["actor.off_policy.tis_cap=0"], "actor.off_policy.tis_cap: must be > 0, got 0.0"),
    (["actor.off_policy.decoupled_cap=-1"], "actor.off_policy.decoupled_cap: must be > 0 (or null: uncapped), got -1.0"),
    (["actor.off_policy.mis_bounds=[1.2, 2]"], "actor.off_policy.mis_bounds: must be [lower, upper] with 0 <= lower <= 1 <= upper"),
    (["actor.off_policy.icepop_bounds=[0.5]"], "actor.off_policy.icepop_bounds: must be [lower, upper]"),
    (["actor.off_policy.correction=icepop", "rollout.logprobs=false"], "needs the rollout engine's logprobs; set rollout.logprobs: true"),
])
def test_bad_settings_name_the_key(overrides, message):
    assert message in error_of(*overrides)


def test_the_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "actor.off_policy.icepop_bounds=[2, 5]"]) == 2
    assert "actor.off_policy.icepop_bounds" in capsys.readouterr().err
    assert not out.exists()
