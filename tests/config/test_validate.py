"""Recipe validation: value ranges, fixed choices, registry names and cross-field checks."""

from __future__ import annotations

import dataclasses

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.controller.preflight import load_checked_recipe
from rlhf.config.schema import ModelConfig, RecipeConfig, RewardConfig
from rlhf.config.validate import validate

MODEL = "model.path=org/some-model"


def error_of(*overrides: str) -> str:
    """The ConfigError message of a recipe with a model path and ``overrides``."""
    with pytest.raises(ConfigError) as info:
        load_checked_recipe(None, [MODEL, *overrides])
    return str(info.value)


def valid() -> RecipeConfig:
    """A valid recipe built in code."""
    return RecipeConfig(model=ModelConfig(path="org/some-model"))


def test_valid_recipe_passes():
    validate(valid())


@pytest.mark.parametrize(("override", "message"), [
    ("actor.lr=0", "actor.lr: must be > 0, got 0.0"),
    ("rollout.n=0", "rollout.n: must be >= 1, got 0"),
    ("rollout.temperature=0", "rollout.temperature: must be > 0, got 0.0"),
    ("rollout.top_p=1.5", "rollout.top_p: must be in (0, 1], got 1.5"),
    ("rollout.top_p=0", "rollout.top_p: must be in (0, 1], got 0.0"),
    ("rollout.top_k=-1", "rollout.top_k: must be >= 0, got -1"),
    ("rollout.max_new_tokens=0", "rollout.max_new_tokens: must be >= 1, got 0"),
    ("rollout.micro_batch_size=-1", "rollout.micro_batch_size: must be >= 0, got -1"),
    ("actor.clip_low=-0.1", "actor.clip_low: must be >= 0, got -0.1"),
    ("actor.clip_high=-0.1", "actor.clip_high: must be >= 0, got -0.1"),
    ("actor.ppo_epochs=0", "actor.ppo_epochs: must be >= 1, got 0"),
    ("data.eval_batch_size=0", "data.eval_batch_size: must be >= 1, got 0"),
    ("sft.batch_size=0", "sft.batch_size: must be >= 1, got 0"),
    ("trainer.total_steps=-1", "trainer.total_steps: must be >= 0, got -1"),
    ("trainer.eval_every=-1", "trainer.eval_every: must be >= 0, got -1"),
    ("actor.betas=[0.9]", "actor.betas: must be two values in [0, 1), got [0.9]"),
    ("actor.betas=[0.9, 1]", "actor.betas: must be two values in [0, 1), got [0.9, 1.0]"),
    ("sft.stop_at_accuracy=1.1", "sft.stop_at_accuracy: must be in [0, 1], got 1.1"),
    ("data.train.size=0", "data.train.size: must be >= 1 (or null), got 0"),
    ("train.max_tokens_per_micro_batch=-1", "train.max_tokens_per_micro_batch: must be >= 0 (0: off), got -1"),
])
def test_range_rules_name_the_key(override, message):
    assert error_of(override) == message


def test_zero_is_allowed_where_it_means_off():
    cfg = load_checked_recipe(None, [MODEL, "trainer.total_steps=0", "trainer.eval_every=0",
                             "rollout.top_k=0", "rollout.micro_batch_size=0",
                             "actor.clip_low=0", "sft.stop_at_accuracy=1"])
    assert cfg.trainer.total_steps == 0


@pytest.mark.parametrize(("override", "message"), [
    ("model.source=huggingface",
     "model.source: unknown value 'huggingface' (valid values: pretrained, tiny)"),
    ("model.dtype=float16",
     "model.dtype: unknown value 'float16' (did you mean 'bfloat16'? "
     "valid values: float32, bfloat16)"),
    ("actor.lr_schedule=cosin",
     "actor.lr_schedule: unknown value 'cosin' (did you mean 'cosine'? "
     "valid values: constant, cosine)"),
    ("trainer.device=mps", "trainer.device: unknown value 'mps' (valid values: auto, cpu, cuda)"),
    ("algorithm.kl.placement=rewards",
     "algorithm.kl.placement: unknown value 'rewards' (did you mean 'reward'? "
     "valid values: loss, reward)"),
    ("rollout.engine=sglang", "rollout.engine: unknown value 'sglang' (valid values: hf, vllm)"),
    ("distributed.backend=slurm", "distributed.backend: unknown value 'slurm' (valid values: local, ray)"),
])
def test_fixed_choices(override, message):
    assert error_of(override) == message


@pytest.mark.parametrize(("override", "key", "registry"), [
    ("algorithm.advantage=grp", "algorithm.advantage",
     ("rlhf.algorithms.advantages", "ADVANTAGE_ESTIMATORS")),
    ("actor.loss_agg=token-meen", "actor.loss_agg",
     ("rlhf.algorithms.losses", "LOSS_AGG_MODES")),
    ("algorithm.kl.kind=k33", "algorithm.kl.kind", ("rlhf.algorithms.kl", "KL_ESTIMATORS")),
    ("reward.sources.0.type=arithmetik", "reward.sources.0.type",
     ("rlhf.rewards.registry", "REWARD_SOURCES")),
])
def test_registry_names(override, key, registry):
    import importlib

    names = list(getattr(importlib.import_module(registry[0]), registry[1]))
    bad = override.split("=", 1)[1]
    message = error_of(override)
    assert message.startswith(f"{key}: unknown value {bad!r} (did you mean ")
    assert message.endswith(f"? valid values: {', '.join(names)})")


def test_every_registered_name_is_accepted():
    from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS
    from rlhf.algorithms.kl import KL_ESTIMATORS
    from rlhf.algorithms.losses import LOSS_AGG_MODES

    for name, estimator in ADVANTAGE_ESTIMATORS.items():
        # turn-level estimators need a multi-turn run
        env = ["env.type=guess_number", "env.max_total_tokens=128", "data.max_prompt_tokens=64"] if estimator.needs_turns else []
        load_checked_recipe(None, [MODEL, f"algorithm.advantage={name}", *env])
    for name in KL_ESTIMATORS:
        load_checked_recipe(None, [MODEL, f"algorithm.kl.kind={name}"])
    for name in LOSS_AGG_MODES:
        load_checked_recipe(None, [MODEL, f"actor.loss_agg={name}"])


def test_registry_stand_in_is_read_at_validation_time(monkeypatch):
    import rlhf.rewards.registry as registry

    monkeypatch.setitem(registry.REWARD_SOURCES, "format", object)
    cfg = dataclasses.replace(valid(), reward=RewardConfig(sources=[
        dataclasses.replace(valid().reward.sources[0], type="format")]))
    validate(cfg)


def test_mini_batch_must_divide_the_step_batch():
    assert error_of("data.train_batch_size=6", "rollout.n=5", "actor.mini_batch_size=4",
                    "actor.micro_batch_size=2") == (
        "data.train_batch_size (6) * rollout.n (5) = 30 sequences per step is not "
        "divisible by actor.mini_batch_size (4)")


def test_micro_batch_must_divide_the_mini_batch():
    assert error_of("actor.mini_batch_size=128", "actor.micro_batch_size=48") == (
        "actor.mini_batch_size (128) is not divisible by actor.micro_batch_size (48)")


def test_batch_checks_skip_sizes_already_out_of_range():
    assert error_of("actor.mini_batch_size=0") == "actor.mini_batch_size: must be >= 1, got 0"


def test_pretrained_model_needs_a_path():
    with pytest.raises(ConfigError, match=r"^model\.path: must name .* model\.source is "):
        load_checked_recipe(None, ["model.path= "])


TINY = ("model.source=tiny", "data.max_prompt_tokens=32")


def test_tiny_model_needs_no_path():
    cfg = load_recipe(None, list(TINY))
    assert cfg.model.source == "tiny" and cfg.model.path == ""


def test_tiny_heads_must_divide_width():
    assert error_of(*TINY, "model.tiny.num_heads=3") == (
        "model.tiny.hidden_size (128) is not divisible by model.tiny.num_heads (3)")


def test_tiny_context_must_hold_prompt_and_response():
    assert error_of("model.source=tiny", "data.max_prompt_tokens=100") == (
        "data.max_prompt_tokens (100) + rollout.max_new_tokens (64) = 164 exceeds "
        "model.tiny.max_position_embeddings (128)")


def test_tiny_shape_is_ignored_for_pretrained_models():
    load_checked_recipe(None, [MODEL, "model.tiny.num_heads=3", "data.max_prompt_tokens=1000"])


def test_reward_sources_must_not_be_empty():
    assert error_of("reward.sources=[]") == (
        "reward.sources: must list at least one reward source (e.g. [{type: arithmetic}])")


def test_reward_source_names_must_be_distinct():
    message = error_of("reward.sources=[{type: arithmetic}, {type: arithmetic}]")
    assert message.startswith("reward.sources.0 and reward.sources.1 are both named 'arithmetic'")
    load_checked_recipe(None, [MODEL, "reward.sources=[{type: arithmetic}, {type: arithmetic, name: b}]"])


def test_all_problems_are_reported_together():
    message = error_of("actor.lr=0", "rollout.n=0", "trainer.device=mps")
    assert message.split("; ") == [
        "rollout.n: must be >= 1, got 0",
        "actor.lr: must be > 0, got 0.0",
        "trainer.device: unknown value 'mps' (valid values: auto, cpu, cuda)",
    ]


# ---- policy-loss, critic, anchor and dynamic-sampling keys -------------------------------


@pytest.mark.parametrize(("overrides", "message"), [
    (["actor.dual_clip=1"], "actor.dual_clip: must be > 1 (or null), got 1.0"),
    (["actor.dual_clip=0.5"], "actor.dual_clip: must be > 1 (or null), got 0.5"),
    (["actor.policy_loss=gspoo"],
     "actor.policy_loss: unknown value 'gspoo' (did you mean 'gspo'? valid values: ppo, gspo)"),
    (["critic.loss=mes"],
     "critic.loss: unknown value 'mes' (did you mean 'mse'? valid values: mse, hl_gauss)"),
    (["critic.hl_gauss.v_min=1"], "critic.hl_gauss: v_min (1.0) must be below v_max (1.0)"),
    (["critic.hl_gauss.v_min=2", "critic.hl_gauss.v_max=-2"],
     "critic.hl_gauss: v_min (2.0) must be below v_max (-2.0)"),
    (["ref.anchor.every=2", "ref.anchor.ema=0.9", "algorithm.kl.coef=0.1"],
     "ref.anchor.every (2) and ref.anchor.ema (0.9) are both set; "
     "choose a periodic copy or an EMA, not both"),
])
def test_new_keys_name_the_key(overrides, message):
    assert error_of(*overrides) == message


def test_dual_clip_and_policy_loss_accept_their_valid_values():
    cfg = load_checked_recipe(None, [MODEL, "actor.dual_clip=3", "actor.policy_loss=gspo", "critic.loss=hl_gauss"])
    assert cfg.actor.dual_clip == 3.0
    load_checked_recipe(None, [MODEL, "actor.dual_clip=null", "actor.policy_loss=ppo"])


@pytest.mark.parametrize("anchor", ["ref.anchor.every=10", "ref.anchor.ema=0.5"])
def test_anchor_needs_a_kl_term(anchor):
    assert error_of(anchor) == (
        "ref.anchor: a dynamic anchor moves the reference model, which exists only with a "
        "KL term; set algorithm.kl.coef > 0 or remove ref.anchor")
    load_checked_recipe(None, [MODEL, anchor, "algorithm.kl.coef=0.01"])


def test_dynamic_sampling_needs_groups():
    sizes = ("data.train_batch_size=32", "actor.mini_batch_size=32", "actor.micro_batch_size=32")
    assert error_of("data.dynamic_sampling.enabled=true", "rollout.n=1", *sizes) == (
        "data.dynamic_sampling.enabled: needs rollout.n >= 2 (a group of one sample always "
        "has equal rewards), got rollout.n=1")
    load_checked_recipe(None, [MODEL, "data.dynamic_sampling.enabled=false", "rollout.n=1", *sizes])


# 6 prompts * 5 samples = 30 sequences: the actor's batches divide it, the critic's may not
THIRTY = ("data.train_batch_size=6", "rollout.n=5", "actor.mini_batch_size=6", "actor.micro_batch_size=2")


def test_critic_mini_batch_must_divide_the_step_batch_with_gae():
    assert error_of("algorithm.advantage=gae", *THIRTY, "critic.mini_batch_size=4", "critic.micro_batch_size=2") == (
        "data.train_batch_size (6) * rollout.n (5) = 30 sequences per step is not divisible by "
        "critic.mini_batch_size (4)")


def test_critic_micro_batch_must_divide_its_mini_batch_with_gae():
    assert error_of("algorithm.advantage=gae", "critic.mini_batch_size=128", "critic.micro_batch_size=48") == (
        "critic.mini_batch_size (128) is not divisible by critic.micro_batch_size (48)")


def test_critic_batch_sizes_are_ignored_without_a_critic():
    load_checked_recipe(None, [MODEL, "algorithm.advantage=grpo", *THIRTY, "critic.mini_batch_size=4", "critic.micro_batch_size=3"])


def test_env_keys_and_options_a_multi_turn_run_cannot_honour_are_named():
    with pytest.raises(ConfigError) as raised:
        load_checked_recipe(None, [MODEL, "algorithm.advantage=turn_rloo"])
    assert "algorithm.advantage: 'turn_rloo' assigns credit to the turns" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_checked_recipe(None, [MODEL, "env.type=class", "env.max_turns=0", "env.observation_template=x", "algorithm.advantage=remax",
                                   "data.dynamic_sampling.enabled=true", "trainer.eval_k=[1]", "trainer.eval_n=2"])
    message = str(raised.value)
    for expected in ("env.type: 'class' needs env.path", "env.max_turns: must be >= 1", "env.observation_template: 'x' has no '{observation}'",
                     "algorithm.advantage: remax needs a greedy single-turn", "data.dynamic_sampling.enabled: not available with env",
                     "trainer.eval_k / trainer.eval_n", "env.max_total_tokens (512) is below data.max_prompt_tokens"):
        assert expected in message, expected
    with pytest.raises(ConfigError, match="env.type: unknown value 'chess'"):
        load_checked_recipe(None, [MODEL, "env.type=chess", "data.max_prompt_tokens=64"])
