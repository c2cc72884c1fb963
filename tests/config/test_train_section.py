"""Validation of the `train` section (training engine, ZeRO stage, offloading)."""

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig
from rlhf.config.validate import validate
from rlhf.controller.preflight import check_recipe


def recipe(**train) -> RecipeConfig:
    config = RecipeConfig()
    config.model.source = "tiny"
    config.data.max_prompt_tokens = 32
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def checked(config: RecipeConfig) -> None:
    """Both layers of checks: the config's own, then the engines' (rlhf.controller.preflight)."""
    validate(config)
    check_recipe(config)


def test_defaults_are_the_torch_engine():
    checked(recipe())
    assert recipe().train.engine == "torch"


@pytest.mark.parametrize("train, message", [
    ({"engine": "fsdp"}, "train.engine"),
    ({"engine": "deepspeed", "zero_stage": 4}, "train.zero_stage"),
    ({"zero_stage": 2}, "set train.engine=deepspeed"),
    ({"engine": "deepspeed", "offload_optimizer": True}, "train.offload_optimizer: needs train.zero_stage >= 1"),
    ({"engine": "deepspeed", "zero_stage": 2, "offload_params": True}, "train.offload_params: needs train.zero_stage 3"),
])
def test_invalid_train_settings_name_the_key(train: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        checked(recipe(**train))


def test_deepspeed_zero3_with_offload_is_valid():
    checked(recipe(engine="deepspeed", zero_stage=3, offload_optimizer=True, offload_params=True))


@pytest.mark.slow
def test_rlhf_train_runs_zero_3_with_a_separate_rollout_copy_that_gets_synced(tmp_path):
    """ZeRO-3 partitions the actor's module, so the rollout engine generates with a copy that
    each step's bucketed sync refreshes; the probe check proves the copy follows the policy."""
    import json

    from rlhf.cli.main import main

    out = tmp_path / "run"
    args = [
        "train", "quickstart", "train.engine=deepspeed", "train.zero_stage=3", "trainer.total_steps=2", "sft.enabled=false",
        "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=16", "actor.micro_batch_size=8", "data.eval.size=8",
        "sync.check_every=1", "sync.bucket_mb=1", "actor.lr=1e-2", f"trainer.output_dir={out}",
    ]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["step"] > 0]
    assert len(steps) == 2
    assert all(r["sync/bytes"] > 0 for r in steps)
    assert all(r["sync/probe_logprob_diff_max"] < 1e-3 for r in steps)
