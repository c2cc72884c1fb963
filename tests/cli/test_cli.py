"""The `rlhf` command line: exit codes, messages, recipes listing, validation of every recipe."""

import os
import subprocess
import sys

import huggingface_hub.constants
import pytest

from reward_models.config import is_rm_recipe_file
from rlhf.cli.main import RECIPES_DIR, main
from rlhf.config.loader import load_recipe
from rlhf.models.reachable import recipe_models
from tiny_helpers import cache_hub_model

SHIPPED = sorted(RECIPES_DIR.rglob("*.yaml"))


def test_help_imports_no_heavy_backend():
    code = "import sys; from rlhf.cli.main import build_parser; import rlhf; print(sorted(m for m in ('torch', 'ray', 'deepspeed', 'vllm', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "validate" in capsys.readouterr().out


@pytest.mark.parametrize("recipe", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_recipe_validates(recipe, capsys, tmp_path, monkeypatch):
    # validate checks that the recipe's hub models can be loaded here: offline, from the cache
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    if not is_rm_recipe_file(recipe):
        for _, path in recipe_models(load_recipe(recipe)):
            cache_hub_model(tmp_path, path)
    assert main(["validate", str(recipe)]) == 0
    assert "valid" in capsys.readouterr().out


def test_recipes_lists_each_with_description(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    assert "quickstart" in out and "GRPO" in out


def test_shipped_recipe_found_by_name(capsys):
    assert main(["validate", "quickstart"]) == 0


def test_unknown_key_exits_2_with_suggestion(capsys):
    assert main(["validate", "quickstart", "actor.lrr=1e-5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'actor.lr'" in err and "Traceback" not in err


def test_wrong_type_names_key(capsys):
    assert main(["validate", "quickstart", "actor.lr=fast"]) == 2
    assert "actor.lr: expected a float, got 'fast'" in capsys.readouterr().err


def test_indivisible_batch_names_keys(capsys):
    assert main(["validate", "quickstart", "actor.mini_batch_size=100"]) == 2
    err = capsys.readouterr().err
    assert "data.train_batch_size" in err and "rollout.n" in err and "actor.mini_batch_size" in err


def test_missing_recipe_exits_2(capsys):
    assert main(["validate", "no/such/recipe.yaml"]) == 2
    assert "no/such/recipe.yaml" in capsys.readouterr().err


def test_console_script_exit_status(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("actor: {lr: [1\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "rlhf.cli.main", "validate", str(bad)], capture_output=True, text=True, env=env)
    assert done.returncode == 2
    assert str(bad) in done.stderr and "Traceback" not in done.stderr
