"""Validation of the `train` section (training engine, ZeRO stage, offloading)."""

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig
from rlhf.config.validate import validate


def recipe(**train) -> RecipeConfig:
    config = RecipeConfig()
    config.model.source = "tiny"
    config.data.max_prompt_tokens = 32
    for key, value in train.items():
        setattr(config.train, key, value)
    return config


def test_defaults_are_the_torch_engine():
    validate(recipe())
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
        validate(recipe(**train))


def test_deepspeed_zero3_with_offload_is_valid():
    validate(recipe(engine="deepspeed", zero_stage=3, offload_optimizer=True, offload_params=True))


def test_rlhf_train_refuses_zero_3_before_writing_anything(tmp_path, capsys):
    from rlhf.cli.main import main

    out = tmp_path / "run"
    assert main(["train", "quickstart", "train.engine=deepspeed", "train.zero_stage=3", f"trainer.output_dir={out}"]) == 2
    assert "train.zero_stage: 3 is not supported by `rlhf train` yet" in capsys.readouterr().err
    assert not out.exists()
