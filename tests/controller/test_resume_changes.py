"""The rules of what a resumed launch may change (rlhf.controller.resume_changes), on configs."""

import pytest

from rlhf.config.errors import ConfigError
from rlhf.cli.main import RECIPES_DIR
from rlhf.config.loader import load_recipe, to_dict
from rlhf.controller.resume_changes import Change, Resume, changed_keys, check_changes, flatten


def config(*overrides: str) -> dict:
    """The quickstart's resolved config (GRPO, a cosine LR with warm-up, SFT on) as plain data."""
    return to_dict(load_recipe(RECIPES_DIR / "quickstart.yaml", overrides))


def test_flatten_indexes_lists_of_mappings_and_keeps_other_lists_whole():
    flat = flatten({"a": {"b": [1, 2], "c": [{"d": 1}, {"d": 2}]}, "e": []})
    assert flat == {"a.b": [1, 2], "a.c.0.d": 1, "a.c.1.d": 2, "e": []}


def test_changed_keys_lists_old_and_new_values():
    old, new = config(), config("trainer.total_steps=7", "reward.sources.0.weight=2")
    changes = changed_keys(old, new)
    assert Change("trainer.total_steps", 600, 7) in changes and Change("reward.sources.0.weight", 1.0, 2) in changes
    assert str(changes[0]).count("->") == 1


def test_where_the_run_resumes_from_is_not_a_change():
    assert changed_keys(config(), config("trainer.output_dir=elsewhere", "trainer.resume=never")) == []


@pytest.mark.parametrize("override", [
    "trainer.total_steps=200", "trainer.eval_every=5", "trainer.loggers=[console,jsonl,tensorboard]", "actor.clip_high=0.28",
    "rollout.temperature=0.7", "algorithm.advantage=rloo", "reward.sources.0.weight=0.5", "trainer.save_every=3",
])
def test_allowed_changes(override):
    assert len(check_changes(Resume(config(), config(override)), "runs/x")) == 1


@pytest.mark.parametrize("override, reason", [
    ("model.tiny.num_layers=3", "architecture and shape"),
    ("model.lora.rank=8", "LoRA adapters"),
    ("train.engine=deepspeed", "layout"),
    ("actor.lr=1e-3", "silently ignored"),
    ("algorithm.kl.coef=0.1", "KL controller"),
    ("algorithm.advantage=gae", "a critic exists"),
    ("trainer.seed=1", "random-number state"),
    ("data.arithmetic.digits=3", "training rows"),
    ("data.eval.size=10", "evaluation set"),
    ("sft.enabled=false", "SFT model"),
])
def test_refused_changes_name_the_key_the_values_and_why(override, reason):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as error:
        check_changes(Resume(config(), config(override)), "runs/x")
    assert f"{key}: " in str(error.value) and "->" in str(error.value) and reason in str(error.value)


def test_batch_sizes_are_refused_only_when_the_lr_schedule_moves():
    # a constant LR without warm-up: the schedule's position does not matter
    flat = ["actor.lr_schedule=constant", "actor.warmup_steps=0"]
    assert check_changes(Resume(config(*flat), config(*flat, "data.train_batch_size=64")), "x")
    cosine = ["actor.lr_schedule=cosine"]
    with pytest.raises(ConfigError, match="data.train_batch_size: 32 -> 64 .the checkpoint's LR-schedule position"):
        check_changes(Resume(config(*cosine), config(*cosine, "data.train_batch_size=64")), "x")


def test_the_sft_learning_rate_is_refused_only_when_an_sft_checkpoint_resumes():
    assert check_changes(Resume(config(), config("sft.lr=0.01")), "x")
    with pytest.raises(ConfigError, match="sft.lr"):
        check_changes(Resume(config(), config("sft.lr=0.01"), sft_checkpoint=True), "x")


def test_the_weights_dtype_cannot_change_but_a_run_from_before_the_key_resumes():
    bf16 = ["model.dtype=bfloat16", "model.param_dtype=bfloat16"]
    with pytest.raises(ConfigError, match="model.param_dtype: 'float32' -> 'bfloat16' .the checkpoint holds the trained weights in this dtype"):
        check_changes(Resume(config(), config(*bf16)), "x")
    before_the_key = config()
    del before_the_key["model"]["param_dtype"]
    assert check_changes(Resume(before_the_key, config()), "x") == [Change("model.param_dtype", "(absent)", "float32")]
