"""`rlhf rm` recipes: strict loading with the shared loader, value checks naming the key, exit
status 2 on config errors, and `rlhf validate` / `rlhf recipes` knowing reward-model recipes."""

import pytest

from reward_models.config import RMRecipeConfig, is_rm_recipe_data, is_rm_recipe_file, load_rm_recipe, rl_only_keys
from rlhf.cli.main import RECIPES_DIR, main
from rlhf.config.errors import ConfigError

RM_RECIPES = sorted((RECIPES_DIR / "rm").glob("*.yaml"))


def test_shipped_rm_recipes_load_and_are_recognised():
    assert [p.stem for p in RM_RECIPES] == ["orm_labels_arithmetic", "orm_pairs_arithmetic", "prm_arithmetic"]
    for path in RM_RECIPES:
        config = load_rm_recipe(path)
        assert is_rm_recipe_file(path) and config.kind == path.stem.removesuffix("_arithmetic")
        assert config.description and config.model.source == "tiny"
    assert not is_rm_recipe_file(RECIPES_DIR / "quickstart.yaml")


def test_defaults_then_file_then_overrides(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("kind: prm\ntrain: {lr: 2.0e-3}\n")
    config = load_rm_recipe(path, ["train.epochs=0.5", "steps.separator='|'"])
    assert (config.kind, config.train.lr, config.train.epochs, config.steps.separator) == ("prm", 2e-3, 0.5, "|")
    assert config.train.batch_size == RMRecipeConfig().train.batch_size


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.lrr=1"], "train.lrr: unknown key; did you mean 'train.lr'?"),
    (["kind=dpo"], "kind: unknown value 'dpo'; valid: orm_pairs, orm_labels, prm"),
    (["train.lr=fast"], "train.lr: expected a float, got 'fast'"),
    (["train.lr=0"], "train.lr: must be positive"),
    (["train.batch_size=0"], "train.batch_size: must be at least 1"),
    (["model.source=pretrained"], "model.path: required when model.source is 'pretrained'"),
    (["data.source=data.csv"], "data.source: expected 'synthetic_arithmetic' or a .jsonl path"),
    (["data.error_fraction=1.0"], "data.error_fraction: must be between 0 and 1"),
    (["steps.separator="], "steps.separator: must not be empty"),
    (["steps.step_split=("], "steps.step_split: not a regular expression"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        load_rm_recipe(None, overrides)
    assert message in str(error.value)


def test_rm_bad_key_exits_2_without_training(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["rm", "rm/prm_arithmetic", f"output_dir={out}", "train.epoch=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: train.epoch: unknown key; did you mean 'train.epochs'?") and "Traceback" not in err
    assert not out.exists()


def test_rm_missing_recipe_and_rl_recipe_exit_2(capsys):
    assert main(["rm", "no_such_recipe"]) == 2
    assert "'no_such_recipe' is neither a file nor a shipped recipe" in capsys.readouterr().err
    assert main(["rm", "quickstart"]) == 2
    assert "is an RL recipe: run it with `rlhf train quickstart`" in capsys.readouterr().err


def test_rl_only_sections_tell_the_recipe_kinds_apart():
    assert {"trainer", "rollout", "reward", "actor"} <= rl_only_keys()
    assert not rl_only_keys() & {"description", "model", "data", "train", "kind", "steps", "output_dir"}
    assert is_rm_recipe_data({"kind": "prm"}) and not is_rm_recipe_data({"trainer": {}}) and not is_rm_recipe_data(None)


def test_validate_accepts_rm_recipes_and_checks_their_overrides(capsys):
    assert main(["validate", "rm/orm_pairs_arithmetic"]) == 0
    assert "valid reward-model recipe" in capsys.readouterr().out
    assert main(["validate", "rm/orm_pairs_arithmetic", "kind=ppo"]) == 2
    assert "kind: unknown value 'ppo'" in capsys.readouterr().err


def test_recipes_lists_the_rm_recipes(capsys):
    assert main(["recipes"]) == 0
    assert "rm/prm_arithmetic" in capsys.readouterr().out


def test_rm_refuses_an_output_dir_holding_a_model(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    assert main(["rm", "rm/orm_labels_arithmetic", f"output_dir={tmp_path}"]) == 2
    assert "already holds a trained model" in capsys.readouterr().err


def test_rm_bad_jsonl_exits_2(tmp_path, capsys):
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "1+1=", "chosen": "2"}\n')
    assert main(["rm", "rm/orm_pairs_arithmetic", f"output_dir={tmp_path / 'run'}", f"data.source={data}"]) == 2
    assert "missing field 'rejected'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_rm_max_length_below_every_example_exits_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["rm", "rm/orm_labels_arithmetic", f"output_dir={out}", "train.max_length=4", "data.train_size=10"]) == 2
    assert "train.max_length: all 10 training examples are longer than 4 tokens" in capsys.readouterr().err
    assert not (out / "model").exists()
