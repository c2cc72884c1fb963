"""`model.param_dtype`: its values, how it fits `model.dtype` and the training engine (exit 2
with a message naming the keys, before anything is written)."""

from __future__ import annotations

import pytest

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.controller.preflight import load_checked_recipe

MODEL = "model.path=org/some-model"
CONTRADICTION = ("model.param_dtype: 'bfloat16' holds the policy's weights and activations in bfloat16, so its forward and backward "
                 "run in bfloat16, but model.dtype is 'float32' (float32 compute); set model.dtype=bfloat16 as well")
STAGE_0 = "model.param_dtype: 'bfloat16' with train.engine=deepspeed needs train.zero_stage >= 1 (got 0)"


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_checked_recipe(None, [MODEL, *overrides])
    return str(info.value)


def test_default_is_float32_and_bfloat16_with_bfloat16_compute_is_valid():
    assert load_checked_recipe(None, [MODEL]).model.param_dtype == "float32"
    for engine in (["train.engine=torch"], ["train.engine=deepspeed", "train.zero_stage=1"], ["train.engine=deepspeed", "train.zero_stage=3"]):
        assert load_checked_recipe(None, [MODEL, "model.param_dtype=bfloat16", "model.dtype=bfloat16", *engine]).model.param_dtype == "bfloat16"


def test_unknown_value():
    assert error_of("model.param_dtype=float16") == (
        "model.param_dtype: unknown value 'float16' (did you mean 'bfloat16'? valid values: float32, bfloat16)")


def test_bfloat16_weights_with_float32_compute_is_a_contradiction():
    message = error_of("model.param_dtype=bfloat16")  # model.dtype keeps its default, float32
    assert message.startswith(CONTRADICTION) and "model.param_dtype=float32" in message


def test_deepspeed_stage_0_has_no_master_weights():
    message = error_of("model.param_dtype=bfloat16", "model.dtype=bfloat16", "train.engine=deepspeed", "train.zero_stage=0")
    assert message.startswith(STAGE_0) and "train.engine=torch" in message


@pytest.mark.parametrize(("overrides", "message"), [
    (["model.param_dtype=bfloat16"], CONTRADICTION),
    (["model.param_dtype=bfloat16", "model.dtype=bfloat16", "train.engine=deepspeed"], STAGE_0),
])
def test_rlhf_train_exits_2_and_writes_nothing(tmp_path, capsys, overrides, message):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and "Traceback" not in err
    assert not out.exists()
