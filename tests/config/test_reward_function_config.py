"""Recipe keys of custom reward functions: `reward.sources[i].path / name / batched`,
`reward.on_error`, and where a relative .py path points."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe, save_resolved

MODEL = "model.path=org/some-model"
FUNCTION = "reward.sources=[{type: function, path: my_rewards.py, name: score}]"


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(None, [MODEL, *overrides])
    return str(info.value)


def write_recipe(directory: Path, sources: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "recipe.yaml"
    path.write_text(f"model: {{path: org/m}}\nreward:\n  sources: {sources}\n", encoding="utf-8")
    return path


def test_defaults():
    cfg = load_recipe(None, [MODEL, FUNCTION])
    source = cfg.reward.sources[0]
    assert (source.batched, source.kwargs, cfg.reward.on_error) == (False, {}, "raise")


@pytest.mark.parametrize(("overrides", "message"), [
    (["reward.sources=[{type: function, name: score}]"], "reward.sources.0.path: a function source needs the .py file"),
    (["reward.sources=[{type: function, path: my_rewards.py}]"], "reward.sources.0.name: a function source needs the name of the function to call"),
    (["reward.sources=[{type: function, path: 'my rewards', name: score}]"], "reward.sources.0.path: 'my rewards' is neither a .py file nor a dotted module name"),
    (["reward.sources=[{type: function, path: r.py, name: 'not a name'}]"], "reward.sources.0.name: a function source needs the name"),
    (["reward.sources=[{type: arithmetic, path: r.py}]"], "reward.sources.0.path: only 'function' sources take path, this one has type 'arithmetic'"),
    (["reward.sources=[{type: arithmetic, batched: true}]"], "reward.sources.0.batched: only 'function' sources take batched"),
    ([FUNCTION, "reward.on_error=skip"], "reward.on_error: unknown value 'skip' (valid values: raise, zero)"),
])
def test_function_source_keys_are_checked(overrides, message):
    assert message in error_of(*overrides)


def test_dotted_module_paths_are_kept(tmp_path):
    recipe = write_recipe(tmp_path, "[{type: function, path: my_pkg.rewards, name: score}]")
    assert load_recipe(recipe).reward.sources[0].path == "my_pkg.rewards"


def test_relative_py_path_is_relative_to_the_recipe_file(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path / "recipes", "[{type: function, path: lib/my_rewards.py, name: score}, {type: arithmetic}]")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe(Path("recipes/recipe.yaml"))
    assert cfg.reward.sources[0].path == str(tmp_path.resolve() / "recipes" / "lib" / "my_rewards.py")
    # the resolved config saved in a run directory points at the same file from anywhere
    saved = save_resolved(cfg, tmp_path / "run" / "config.yaml")
    monkeypatch.chdir(tmp_path / "run")
    assert load_recipe(saved) == cfg
    assert recipe.exists()


def test_absolute_path_stays(tmp_path):
    target = tmp_path / "elsewhere" / "r.py"
    recipe = write_recipe(tmp_path / "recipes", f"[{{type: function, path: '{target}', name: score}}]")
    assert load_recipe(recipe).reward.sources[0].path == str(target.resolve())


def test_override_path_is_relative_to_the_current_directory(tmp_path, monkeypatch):
    recipe = write_recipe(tmp_path / "recipes", "[{type: function, path: r.py, name: score}]")
    monkeypatch.chdir(tmp_path)
    cfg = load_recipe(recipe, ["reward.sources.0.path=mine/r.py"])
    assert cfg.reward.sources[0].path == str(tmp_path.resolve() / "mine" / "r.py")
