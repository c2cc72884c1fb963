"""`model.path` with `model.source: tiny`: the tiny model is built in the run directory; a
`model.path` is accepted only when it holds that very tiny model (built earlier). Anything else
(a hub name, a missing or empty directory, the user's own model) is refused: the user meant to
train that model, and nothing is built or written there."""

from pathlib import Path

import pytest

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.config.schema import ModelConfig, TinyModelConfig
from rlhf.models.load import resolve_model_path
from rlhf.models.tiny import build_tiny_model

SMALL_SHAPE = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "max_position_embeddings": 128}


def tiny(path: str = "", **shape) -> ModelConfig:
    return ModelConfig(source="tiny", path=path, tiny=TinyModelConfig(**{**SMALL_SHAPE, **shape}))


def contents(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_hub_name_with_source_tiny_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="model.path: 'Qwen/Qwen2.5-0.5B-Instruct' is not a local directory; .* set model.source=pretrained"):
        resolve_model_path(ModelConfig(source="tiny", path="Qwen/Qwen2.5-0.5B-Instruct"), tmp_path / "run", seed=0)
    assert not (tmp_path / "Qwen").exists()


def test_a_new_directory_is_refused_and_not_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        resolve_model_path(tiny("policy"), tmp_path / "run", seed=0)
    message = str(error.value)
    assert message.startswith("model.path: 'policy' is not a local directory; model.source=tiny trains a random tiny model and builds nothing")
    assert "set model.source=pretrained" in message and "set model.path=''" in message
    assert sorted(tmp_path.iterdir()) == []


def test_an_empty_directory_or_another_model_is_refused_and_left_alone(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="'.*empty' does not hold this recipe's tiny model \\(it has no config.json, model.safetensors, tokenizer.json\\)"):
        resolve_model_path(tiny(str(empty)), tmp_path / "run", seed=0)
    assert list(empty.iterdir()) == []
    # the user's own model: here another tiny Llama, wider than the recipe's
    theirs = build_tiny_model(tmp_path / "theirs", **{**SMALL_SHAPE, "hidden_size": 64})
    before = contents(theirs)
    with pytest.raises(ConfigError, match="its config.json has hidden_size 64 \\(the tiny model's: 32\\)\\); .*set model.source=pretrained"):
        resolve_model_path(tiny(str(theirs)), tmp_path / "run", seed=0)
    assert contents(theirs) == before


def test_the_tiny_model_built_earlier_is_used_where_model_path_names_it(tmp_path):
    built = resolve_model_path(tiny(), tmp_path / "run", seed=0)
    assert built == str(tmp_path / "run" / "init_model") and (Path(built) / "model.safetensors").is_file()
    before = contents(Path(built))
    assert resolve_model_path(tiny(built), tmp_path / "other_run", seed=1) == built
    assert contents(Path(built)) == before and not (tmp_path / "other_run").exists()
    with pytest.raises(ConfigError, match="num_hidden_layers 1 \\(the tiny model's: 2\\)"):
        resolve_model_path(tiny(built, num_layers=2), tmp_path / "run2", seed=0)


def test_train_with_a_model_path_on_the_tiny_recipe_exits_2(tmp_path, capsys):
    mine = tmp_path / "my-model"
    assert main(["train", "quickstart", f"model.path={mine}", f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert f"model.path: '{mine}' is not a local directory" in err and "model.source=pretrained" in err and "Traceback" not in err
    assert not mine.exists()
