"""The strict recipe loader: defaults <- YAML <- overrides, type coercion and error messages."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf.config import schema
from rlhf.config.errors import ConfigError
from rlhf.config.loader import (
    field_docs,
    from_dict,
    load_recipe,
    recipe_from_dict,
    save_resolved,
    to_dict,
)
from rlhf.config.schema import ActorConfig, ModelConfig, RecipeConfig

MODEL = "model.path=org/some-model"
"""The defaults need a model path to be valid (model.source defaults to 'pretrained')."""


def load(*overrides: str, path=None) -> RecipeConfig:
    """load_recipe with a model path set, so only the overrides under test matter."""
    return load_recipe(path, [MODEL, *overrides])


def error_of(*overrides: str, path=None) -> str:
    """The ConfigError message of loading with ``overrides``."""
    with pytest.raises(ConfigError) as info:
        load(*overrides, path=path)
    return str(info.value)


def write(tmp_path, text: str, name: str = "recipe.yaml"):
    """A recipe file holding ``text``."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load():
    assert load() == RecipeConfig(model=ModelConfig(path="org/some-model"))


def test_defaults_alone_need_a_model_path():
    with pytest.raises(ConfigError, match=r"^model\.path: must name"):
        load_recipe(None)


def test_yaml_overrides_defaults_and_keeps_the_rest(tmp_path):
    path = write(tmp_path, "model: {path: org/m}\nactor:\n  lr: 1e-5\n  betas: [0.8, 0.95]\n"
                           "data:\n  eval: {path: held_out.jsonl}\n")
    cfg = load_recipe(path)
    assert cfg.actor.lr == 1e-5 and isinstance(cfg.actor.lr, float)
    assert cfg.actor.betas == [0.8, 0.95]
    assert cfg.data.eval.path == "held_out.jsonl"
    assert cfg.data.eval.split == "test"  # the default of data.eval, not of DatasetConfig
    assert cfg.actor.mini_batch_size == ActorConfig().mini_batch_size


def test_empty_file_means_defaults(tmp_path):
    assert load(path=write(tmp_path, "# nothing\n")) == load()


def test_cli_overrides_win_over_yaml(tmp_path):
    path = write(tmp_path, "trainer: {total_steps: 7, seed: 1}\n")
    cfg = load("trainer.total_steps=50", path=path)
    assert (cfg.trainer.total_steps, cfg.trainer.seed) == (50, 1)


def test_override_examples_from_the_readme():
    cfg = load("trainer.total_steps=50", "trainer.seed=3", "trainer.output_dir=runs/x",
               "trainer.eval_every=10", "actor.lr=1e-5")
    assert cfg.trainer.total_steps == 50 and cfg.trainer.seed == 3
    assert cfg.trainer.output_dir == "runs/x" and cfg.trainer.eval_every == 10
    assert cfg.actor.lr == 1e-5 and isinstance(cfg.actor.lr, float)


@pytest.mark.parametrize(("override", "key", "expected"), [
    ("actor.lr=1e-5", "actor.lr", 1e-5),  # YAML reads 1e-5 as a string
    ("actor.lr=2", "actor.lr", 2.0),
    ("actor.lr= 3.0e-6 ", "actor.lr", 3e-6),
    ("trainer.total_steps=50", "trainer.total_steps", 50),
    ("data.chat_template=true", "data.chat_template", True),
    ("actor.betas=[0.8, 0.99]", "actor.betas", [0.8, 0.99]),
    ("data.train.size=null", "data.train.size", None),
    ("data.train.size=12", "data.train.size", 12),
    ("data.system_prompt=", "data.system_prompt", ""),
    ("data.system_prompt=You add numbers.", "data.system_prompt", "You add numbers."),
    ("trainer.output_dir=7", "trainer.output_dir", "7"),
    ("trainer.output_dir=2024-05-01", "trainer.output_dir", "2024-05-01"),
    ("data.train.path=a=b.jsonl", "data.train.path", "a=b.jsonl"),
    ("reward.sources.0.kwargs={scale: 2}", "reward.sources.0.kwargs", {"scale": 2}),
])
def test_override_value_types(override, key, expected):
    value = _get(load(override), key)
    assert value == expected and type(value) is type(expected)


def _get(cfg, key: str):
    """The value at dotted ``key`` ('reward.sources.0.kwargs')."""
    node = cfg
    for part in key.split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


def test_list_item_override():
    cfg = load("reward.sources.0.weight=2", "reward.sources.0.name=correct")
    assert cfg.reward.sources[0].weight == 2.0 and cfg.reward.sources[0].name == "correct"


@pytest.mark.parametrize(("override", "message"), [
    ("reward.sources.3.weight=2", "reward.sources is a list and there is no item 3: its only item is reward.sources.0 "
     "(or set the whole list with reward.sources=[...])"),
    ("reward.sources.-1.weight=2", "reward.sources is a list and negative indices are not supported: its only item is "
     "reward.sources.0 (or set the whole list with reward.sources=[...])"),
    ("trainer.eval_k.0=4", "trainer.eval_k is a list and there is no item 0: it is empty"),
    ("reward.sources.weight=2", "reward.sources is a list; address an item by its index, like reward.sources.0.weight"),
    ("actor.lr.x=1", "actor.lr is 1e-06, which has no key 'x'"),
])
def test_override_path_errors(override, message):
    assert error_of(override).startswith(f"override {override!r}: {message}")


def test_list_index_errors_name_the_valid_range():
    two = "reward.sources=[{type: arithmetic}, {type: arithmetic, name: b}]"
    for index in ("2", "-2"):
        assert "its items are reward.sources.0 to reward.sources.1" in error_of(two, f"reward.sources.{index}.weight=2")
    assert load(two, "reward.sources.1.weight=3").reward.sources[1].weight == 3.0


def test_mapping_override_merges():
    cfg = load("data.train={path: x.jsonl}", "data.eval={path: y.jsonl}")
    assert cfg.data.train == schema.DatasetConfig(path="x.jsonl", split="train")
    assert cfg.data.eval == schema.DatasetConfig(path="y.jsonl", split="test")


def test_whole_list_override_replaces_and_fills_item_defaults():
    cfg = load("reward.sources=[{type: arithmetic, weight: 0.5}, {type: arithmetic, name: b}]")
    assert cfg.reward.sources == [schema.RewardSourceConfig(weight=0.5),
                                  schema.RewardSourceConfig(name="b")]


@pytest.mark.parametrize("bad", ["foo", "=3", " =3", "actor..lr=1", "actor.lr.=1"])
def test_malformed_override(bad):
    assert error_of(bad) == f"override {bad!r} must look like key.sub=value"


def test_override_with_invalid_yaml_value():
    assert error_of("actor.betas=[0.9").startswith("override 'actor.betas=[0.9'")


def test_unknown_key_suggests_the_close_one():
    assert error_of("actor.lrr=1") == "actor.lrr: unknown key; did you mean 'actor.lr'?"
    assert error_of("reward.sources.0.wieght=1") == (
        "reward.sources.0.wieght: unknown key; did you mean 'reward.sources.0.weight'?")
    assert error_of("trainr.seed=1") == "trainr: unknown key; did you mean 'trainer'?"


def test_unknown_key_without_close_match_lists_the_section(tmp_path):
    message = error_of(path=write(tmp_path, "rollout:\n  zzz: 1\n"))
    assert message.startswith("rollout.zzz: unknown key; the keys of 'rollout' are: engine, n,")
    assert error_of("qqq=1").startswith("qqq: unknown key; the top-level keys are: description,")


def test_wrong_type_message():
    assert error_of("actor.lr=fast") == "actor.lr: expected a float, got 'fast'"
    assert error_of("actor.betas=0.9") == "actor.betas: expected a list, got 0.9"
    assert error_of("actor.betas=[0.9, x]") == "actor.betas.1: expected a float, got 'x'"
    assert error_of("actor=3") == "actor: expected a mapping, got 3"
    assert error_of("data.train.size=ten") == (
        "data.train.size: expected an integer or null, got 'ten'")
    assert error_of("reward.sources.0.kwargs=[1]") == (
        "reward.sources.0.kwargs: expected a mapping, got [1]")


@pytest.mark.parametrize(("override", "message"), [
    ("data.chat_template=1", "data.chat_template: expected a boolean (true or false), got 1"),
    ("data.chat_template=maybe",
     "data.chat_template: expected a boolean (true or false), got 'maybe'"),
    ("trainer.seed=true", "trainer.seed: expected an integer, got True"),
    ("trainer.seed=1.5", "trainer.seed: expected an integer, got 1.5"),
    ("trainer.seed='3'", "trainer.seed: expected an integer, got '3'"),
    ("actor.lr=false", "actor.lr: expected a float, got False"),
    ("actor.lr=.nan", "actor.lr: expected a float, got nan"),
    ("actor.lr=1e999", "actor.lr: expected a float, got '1e999'"),
    ("trainer.output_dir=no", "trainer.output_dir: expected a string, got False "
     "(YAML reads yes/no/on/off as booleans: quote it)"),
    ("trainer.output_dir=[a]", "trainer.output_dir: expected a string, got ['a']"),
])
def test_strict_scalars(override, message):
    assert error_of(override) == message


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.total_steps=99999999999999999999",
     "trainer.total_steps: 99999999999999999999 does not fit in a 64-bit integer (-9223372036854775808 to 9223372036854775807)"),
    ("trainer.eval_k=[1, -9223372036854775809]", "trainer.eval_k.1: -9223372036854775809 does not fit in a 64-bit integer"),
    ("data.train.size=18446744073709551616", "data.train.size: 18446744073709551616 does not fit in a 64-bit integer"),
    ("trainer.seed=99999999999999999999", "trainer.seed: 99999999999999999999 is not a usable seed; a seed is a whole number "
     "from 0 to 2147483647 (numpy and vLLM take seeds below 2**32"),
    ("trainer.seed=-1", "trainer.seed: -1 is not a usable seed"),
    ("trainer.seed=2147483648", "trainer.seed: 2147483648 is not a usable seed"),
    ("data.arithmetic.seed=4294967296", "data.arithmetic.seed: 4294967296 is not a usable seed"),
])
def test_out_of_range_integers_name_the_key(override, message):
    assert error_of(override).startswith(message)


def test_integers_at_the_edges_of_their_range_load():
    cfg = load("trainer.seed=2147483647", "trainer.total_steps=9223372036854775807", "data.arithmetic.seed=0")
    assert (cfg.trainer.seed, cfg.trainer.total_steps) == (2**31 - 1, 2**63 - 1)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "actor:\n  lr: 1.0\n  betas: [0.9, 0.99\ntrainer: {}\n")
    message = error_of(path=path)
    assert message.startswith(f"{path}, line 4, column ")
    assert "invalid YAML" in message


def test_top_level_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- actor\n- lr\n")
    assert error_of(path=path).startswith(f"{path}: the top level must be a mapping")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(path=path) == f"recipe file not found: {path}"


def test_directory_is_not_a_recipe(tmp_path):
    assert error_of(path=tmp_path).startswith(f"cannot read recipe file {tmp_path}")


def test_yaml_never_runs_code(tmp_path):
    path = write(tmp_path, "description: !!python/object/apply:os.system ['echo hacked']\n")
    assert "invalid YAML" in error_of(path=path)


def test_recursive_yaml_alias_is_refused(tmp_path):
    path = write(tmp_path, "reward:\n  sources: &s [*s]\n")
    assert "nested too deeply" in error_of(path=path)


def test_yaml_alias_is_copied_before_overrides(tmp_path):
    path = write(tmp_path, "reward:\n  sources:\n    - &a {type: arithmetic, name: a}\n"
                           "    - *a\n")
    cfg = load("reward.sources.1.name=b", path=path)
    assert [source.name for source in cfg.reward.sources] == ["a", "b"]


def test_from_dict_coerces_and_names_the_path():
    assert from_dict({"lr": "1e-6", "betas": [0, 0.5]}, ActorConfig, "actor") == ActorConfig(
        lr=1e-6, betas=[0.0, 0.5])
    with pytest.raises(ConfigError, match=r"^actor\.ppo_epochs: expected an integer"):
        from_dict({"ppo_epochs": "2"}, ActorConfig, "actor")


def test_save_resolved_round_trip(tmp_path):
    cfg = load("description='2024-05-01: yes'", "actor.lr=3e-7", "data.system_prompt='no'",
               "reward.sources.0.kwargs={scale: 2, tags: [a, 1]}", "data.train.size=5",
               "trainer.output_dir='on'", "actor.betas=[0, 0.5]")
    saved = save_resolved(cfg, tmp_path / "run" / "config.yaml")
    assert load_recipe(saved) == cfg
    assert yaml.safe_load(saved.read_text())["actor"]["lr"] == 3e-7


def test_to_dict_is_plain_data():
    data = to_dict(load())
    assert data["reward"]["sources"] == [
        {"type": "arithmetic", "weight": 1.0, "name": None, "kwargs": {}, "path": "", "batched": False, "timeout_s": 60.0}]
    assert recipe_from_dict(data) == load()


def _schema_classes(cls=RecipeConfig):
    """Every dataclass reachable from ``cls``."""
    yield cls
    for tp in typing.get_type_hints(cls).values():
        for candidate in (tp, *typing.get_args(tp)):
            if dataclasses.is_dataclass(candidate):
                yield from _schema_classes(candidate)


def test_field_docs():
    assert field_docs(ActorConfig)["lr"] == "Peak learning rate of AdamW."
    for cls in _schema_classes():
        docs = field_docs(cls)
        assert list(docs) == [f.name for f in dataclasses.fields(cls)]
        assert all(docs.values()), f"{cls.__name__} has a field without a docstring"


# --- property tests: any input gives a RecipeConfig or a ConfigError, never another exception

KEYS = sorted({f.name for cls in _schema_classes() for f in dataclasses.fields(cls)})
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                    st.floats(allow_nan=True), st.text(max_size=12), st.sampled_from(KEYS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner,
                                        max_size=4), max_leaves=12)
KEY_PATHS = st.lists(st.sampled_from(KEYS) | st.sampled_from(["0", "1", ""]) | st.text(max_size=4),
                     min_size=1, max_size=4).map(".".join)


def _leaf_keys(data, prefix=""):
    """Dotted keys of the scalar fields in ``data`` ('actor.lr', ...)."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


LEAF_VALUES = st.integers(0, 300) | st.floats(0.01, 1) | st.booleans() | st.sampled_from(
    ["tiny", "hf", "cpu", "k1", "null", "[0.5, 0.9]"])
LEAF_OVERRIDES = st.tuples(st.sampled_from(list(_leaf_keys(to_dict(RecipeConfig())))),
                           LEAF_VALUES).map("{0[0]}={0[1]}".format)
OVERRIDES = st.one_of(
    LEAF_OVERRIDES,
    st.text(max_size=30),
    st.tuples(KEY_PATHS, st.text(max_size=20)).map("=".join),
    st.tuples(KEY_PATHS, VALUES).map(lambda kv: f"{kv[0]}={yaml.safe_dump(kv[1])}"),
)


def _loads_or_config_error(build):
    try:
        cfg = build()
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(cfg, RecipeConfig)
    assert recipe_from_dict(to_dict(cfg)) == cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OVERRIDES, max_size=4))
def test_random_overrides_load_or_raise_config_error(overrides):
    _loads_or_config_error(lambda: load(*overrides))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LEAF_OVERRIDES, max_size=3))
def test_overrides_of_real_keys_round_trip_through_the_saved_file(tmp_path_factory, overrides):
    try:
        cfg = load(*overrides)
    except ConfigError:
        return
    saved = save_resolved(cfg, tmp_path_factory.mktemp("run") / "config.yaml")
    assert load_recipe(saved) == cfg


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), VALUES, max_size=5))
def test_random_nested_dicts_load_or_raise_config_error(data):
    _loads_or_config_error(lambda: recipe_from_dict(data, [MODEL]))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_random_yaml_text_loads_or_raises_config_error(tmp_path_factory, text):
    path = write(tmp_path_factory.mktemp("recipe"), text)
    _loads_or_config_error(lambda: load(path=path))


def test_a_removed_key_says_what_replaces_it():
    with pytest.raises(ConfigError, match=r"algorithm.norm_by_std: this key was removed; Dr. GRPO is its own estimator now: set algorithm.advantage=drgrpo"):
        load_recipe(None, ["model.path=org/m", "algorithm.norm_by_std=false"])
