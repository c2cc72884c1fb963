"""`model.path` with `model.source: tiny` names where the tiny model is built; a hub name left
over from a recipe is refused instead of becoming a directory tree in the working directory."""

from pathlib import Path

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.schema import ModelConfig
from rlhf.models.load import resolve_model_path


def test_a_hub_name_with_source_tiny_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="model.path: 'Qwen/Qwen2.5-0.5B-Instruct' is not a local directory"):
        resolve_model_path(ModelConfig(source="tiny", path="Qwen/Qwen2.5-0.5B-Instruct"), tmp_path / "run", seed=0)
    assert not (tmp_path / "Qwen").exists()


def test_a_directory_whose_parent_exists_gets_the_tiny_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    built = resolve_model_path(ModelConfig(source="tiny", path="policy"), tmp_path / "run", seed=0)
    assert (Path(built) / "config.json").is_file()
    assert resolve_model_path(ModelConfig(source="tiny"), tmp_path / "run", seed=0) == str(tmp_path / "run" / "init_model")
