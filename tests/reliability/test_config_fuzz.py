"""Property tests of the config loader and the override parser (bad input swept).

Whatever a recipe file or a `key.sub=value` override holds (random bytes, mutated shipped
recipes, deep nesting, huge numbers, odd unicode, YAML tags that would run code), the only
outcomes are a valid RecipeConfig, which also saves and loads back unchanged (a run saves it
as config.yaml), or a ConfigError whose message names the file, the override or a key. Any
other exception is a bug; the examples that found one are kept as explicit `@example`s.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rlhf.config.errors import ConfigError
from rlhf.config.loader import apply_override, load_recipe, save_resolved, to_dict
from rlhf.config.schema import RecipeConfig

MODEL = "model.path=org/some-model"
"""The defaults need a model path to be valid (model.source defaults to 'pretrained')."""
RECIPES = sorted(p for p in (Path(__file__).resolve().parents[2] / "recipes").rglob("*.yaml") if p.parent.name != "rm")
SECTIONS = [f.name for f in dataclasses.fields(RecipeConfig)]
NAMES_A_KEY = re.compile(r"\b(" + "|".join(SECTIONS) + r")(\.[^\s:,;()]+)?\b")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _leaf_keys(data: dict, prefix: str = ""):
    """Dotted keys of the scalar and list fields in ``data`` ('actor.lr', ...)."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


LEAF_KEYS = sorted(_leaf_keys(to_dict(RecipeConfig())))
ODD_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12) | st.sampled_from(
    ["", " ", "\u202e", "\ufeff", "\u2028x", "é", "日本", "🙂", "a\x00b", "~", "null", "yes", "off", "1e-6", "0x1F",
     "2024-05-01", "1_000", "{prompt}", "*a", "&a", "!!str", "%", "@", "`"])
HUGE = st.sampled_from([10**18, -(10**18), 10**400, -(10**400), 2**63, 2**64 + 1])
SCALARS = (st.none() | st.booleans() | st.integers() | HUGE | st.floats(allow_nan=True, allow_infinity=True) | ODD_TEXT
           | st.binary(max_size=6))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    ODD_TEXT | st.sampled_from(SECTIONS + ["lr", "n", "path", "type", "kwargs"]), inner, max_size=3), max_leaves=10)
YAML_PIECES = st.sampled_from([
    ":", ": ", "- ", "[", "]", "{", "}", ",", "? ", "#", "|", ">", "'", '"', "\t", "\n", "\n  ", "---\n", "...\n",
    "%YAML 1.1\n", "&a ", "*a", "<<: *a", "!!str ", "!!int ", "!!float ", "!!binary ", "!!set ", "!!omap ",
    "!!python/object/apply:os.system ['true']", "!!python/name:os.system", "!local ", "\x00", "\x85", "\ufeff",
    "1e999", "-.inf", ".nan", "~", "null", "yes", "2024-05-01", "9" * 400, "\\", "\"\\0\"", "\"\\x00.py\"", "~nouser/x.py",
])
TAGS_THAT_RUN_CODE = [
    "!!python/object/apply:{call} [{arg}]", "!!python/object/new:{call} [{arg}]", "!!python/name:{call}",
    "!!python/module:os", "!!python/object:os.PathLike {{}}", "!<tag:yaml.org,2002:python/object/apply:{call}> [{arg}]",
    "!!python/object/apply:subprocess.check_call [[touch, {arg}]]",
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def assert_clean(build, path: Path | None = None) -> RecipeConfig | None:
    """Run ``build``: a valid config that round-trips through config.yaml, or a ConfigError
    naming the file, the override or a key; anything else fails the test."""
    try:
        cfg = build()
    except ConfigError as error:
        message = str(error)
        assert message.strip(), "an empty ConfigError message"
        named = (path is not None and str(path) in message) or "override" in message or NAMES_A_KEY.search(message)
        assert named or "unknown key" in message, f"the message names neither the file nor a key: {message!r}"
        return None
    assert isinstance(cfg, RecipeConfig)
    with tempfile.TemporaryDirectory() as run_dir:  # what a run saves as config.yaml loads back the same
        saved = save_resolved(cfg, Path(run_dir) / "config.yaml")
        assert yaml.safe_dump(to_dict(load_recipe(saved))) == yaml.safe_dump(to_dict(cfg))
    return cfg


def load_text(scratch: Path, content: str | bytes) -> None:
    path = scratch / "recipe.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    assert_clean(lambda: load_recipe(path, [MODEL]), path)


# --- recipe files ----------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=300))
@example(b"\xff\xfe\x00m\x00o")
@example(b"model: {path: x}\x00\n")
@example(b"\xef\xbb\xbfmodel: {path: x}\n")
def test_random_bytes(scratch, content):
    load_text(scratch, content)


@FUZZ
@given(st.sampled_from(RECIPES), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 8), YAML_PIECES | ODD_TEXT), max_size=4))
def test_mutated_shipped_recipes(scratch, recipe, edits):
    text = recipe.read_text(encoding="utf-8")
    for where, cut, piece in edits:
        at = int(where * len(text))
        text = text[:at] + piece + text[at + cut:]
    load_text(scratch, text)


@FUZZ
@given(st.dictionaries(st.sampled_from(LEAF_KEYS), VALUES, max_size=4), st.booleans())
@example({"reward.sources": [{"type": "function", "path": "a\x00.py", "name": "s"}]}, False)
@example({"reward.sources": [{"type": "function", "path": "~nouser_xyz/r.py", "name": "s"}]}, True)
def test_any_values_under_real_keys(scratch, values, flow):
    data: dict = {"model": {"path": "org/m"}}
    for dotted, value in values.items():
        node = data
        *parents, leaf = dotted.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    load_text(scratch, yaml.safe_dump(data, allow_unicode=True, default_flow_style=flow))


def nested_block(depth: int) -> str:
    """A block mapping ``depth`` levels deep, by indentation."""
    return "".join("\n" + "  " * (level + 2) + "a:" for level in range(depth)) + " 1"


@pytest.mark.slow  # 6 s
@settings(FUZZ, max_examples=40)  # PyYAML scans deep flow nesting in quadratic time: a few 100 levels suffice
@given(st.integers(1, 400), st.sampled_from(["[{}]", "{{a: {}}}", "!!seq [{}]", "block"]),
       st.sampled_from(["description", "reward.sources.0.kwargs.x", "actor.lr"]))
@example(3000, "[{}]", "description")
@example(70, "block", "reward.sources.0.kwargs.x")
@example(62, "[{}]", "reward.sources.0.kwargs.x")  # loaded, but its saved config.yaml was too deep to load back
def test_deep_nesting(scratch, depth, shape, key):
    value = "1"
    for _ in range(depth if shape != "block" else 0):
        value = shape.format(value)
    if shape == "block":
        value = nested_block(min(depth, 300))
    else:
        assert_clean(lambda: load_recipe(None, [MODEL, f"{key}={value}"]))
    body = {"description": f"description: {value}", "actor.lr": f"actor:\n  lr: {value}",
            "reward.sources.0.kwargs.x": f"reward:\n  sources:\n    - type: arithmetic\n      kwargs:\n        x: {value}"}[key]
    load_text(scratch, f"model: {{path: org/m}}\n{body}\n")


@FUZZ
@given(st.sampled_from(LEAF_KEYS), HUGE | st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    ["1e999", "-1e999", ".inf", "-.inf", ".nan", "1" * 500, "0." + "0" * 400 + "1", "-0", "0e0", "1_0", "0b11", "0o7"]))
def test_huge_and_odd_numbers(scratch, key, number):
    assert_clean(lambda: load_recipe(None, [MODEL, f"{key}={number}"]))


# --- YAML tags that would run code: refused, never executed --------------------------------

@pytest.mark.parametrize("template", TAGS_THAT_RUN_CODE)
@pytest.mark.parametrize("place", ["top", "value", "nested", "key", "override"])
def test_python_tags_are_refused_and_never_run(tmp_path, template, place):
    marker = tmp_path / "ran"
    tag = template.format(call="os.system", arg=f"'touch {marker}'" if "subprocess" not in template else marker)
    path = tmp_path / "recipe.yaml"
    text = {"top": f"{tag}\n", "value": f"model: {{path: org/m}}\ndescription: {tag}\n",
            "nested": f"model: {{path: org/m}}\nreward:\n  sources:\n    - type: arithmetic\n      kwargs:\n        x: {tag}\n",
            "key": f"model: {{path: org/m}}\n? {tag}\n: 1\n", "override": "model: {path: org/m}\n"}[place]
    path.write_text(text, encoding="utf-8")
    overrides = [f"description={tag}"] if place == "override" else []
    with pytest.raises(ConfigError) as info:
        load_recipe(path, overrides)
    assert (str(path) if place != "override" else "override") in str(info.value)
    assert "python/" in str(info.value)
    assert not marker.exists(), "YAML ran code"


@pytest.mark.parametrize("text", ["x: !!binary aGVsbG8=", "x: !!set {a, b}", "x: !!omap [a: 1]", "x: !!pairs [a: 1]",
                                  "x: !!timestamp 2024-05-01", "x: !!float abc", "x: !!int 1.5", "x: !!bool maybe",
                                  "x: !!null x", "x: !!map [1]", "x: !!seq {a: 1}", "x: !unknown 1", "x: !<!> 1"])
@pytest.mark.parametrize("key", ["description", "reward.sources.0.kwargs", "actor.betas"])  # str, Any, list
def test_standard_and_unknown_tags_give_a_clean_result(scratch, text, key):
    value = text.removeprefix("x: ")
    assert_clean(lambda: load_recipe(None, [MODEL, f"{key}={value}"]))
    load_text(scratch, f"model: {{path: org/m}}\ndescription: {value}\n")
    load_text(scratch, f"model: {{path: org/m}}\nreward: {{sources: [{{type: arithmetic, kwargs: {{x: {value}}}}}]}}\n")


# --- overrides -------------------------------------------------------------------------------

KEY_PATHS = st.lists(st.sampled_from(SECTIONS + ["lr", "sources", "0", "1", "kwargs", "x", ""]) | ODD_TEXT,
                     min_size=1, max_size=6).map(".".join)


@FUZZ
@given(st.lists(st.text(max_size=40) | st.tuples(KEY_PATHS, st.text(max_size=20)).map("=".join), max_size=3))
@example(["reward.sources.0.kwargs." + ".".join(["a"] * 3000) + "=1"])
@example(["reward.sources=[{type: function, path: \"a\\0.py\", name: s}]"])
@example(["=", "a==", ".=1", "a..b=1", "a.=1", " = "])
@example(["description=!!bool maybe"])  # KeyError from PyYAML's bool constructor
@example(["reward.sources.0.kwargs={when: !!timestamp 2024-05-01}"])  # a date, read back from config.yaml as a string
def test_random_override_strings(overrides):
    assert_clean(lambda: load_recipe(None, [MODEL, *overrides]))


@FUZZ
@given(st.sampled_from(LEAF_KEYS) | KEY_PATHS, VALUES, st.booleans())
@example("trainer.eval_k", [10**400], True)
@example("reward.sources.0.kwargs", {"a": float("nan")}, True)
def test_real_keys_with_values_of_every_yaml_type(key, value, flow):
    text = yaml.safe_dump(value, allow_unicode=True, default_flow_style=flow).removesuffix("\n...\n")
    assert_clean(lambda: load_recipe(None, [MODEL, f"{key}={text}"]))


@FUZZ
@given(st.text(max_size=60))
def test_apply_override_alone_raises_only_config_errors(text):
    data = to_dict(RecipeConfig())
    try:
        apply_override(data, text)
    except ConfigError as error:
        assert str(error).strip()


def test_a_key_written_twice_in_a_file_is_refused(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: {path: org/m}\nactor:\n  lr: 1.0e-4\nrollout: {n: 4}\nactor:\n  lr: 2.0e-4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}, line 5, column 1: invalid YAML (duplicate key 'actor' (also on line 2)")):
        load_recipe(path)
    path.write_text("model: {path: org/m, \"path\": org/n}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="duplicate key 'path'"):
        load_recipe(path)


def test_merge_keys_may_repeat_what_they_merge(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("model: {path: org/m}\nreward:\n  sources:\n    - &judge {type: function, path: r.py, name: a, weight: 1.0}\n"
                    "    - {<<: *judge, name: b, weight: 0.5}\n", encoding="utf-8")
    cfg = load_recipe(path)
    assert [(s.name, s.weight) for s in cfg.reward.sources] == [("a", 1.0), ("b", 0.5)]
