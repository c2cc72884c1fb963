"""The `rlhf` command line: exit codes, messages, recipes listing, validation of every recipe."""

import os
import subprocess
import sys

import huggingface_hub.constants
import pytest

from reward_models.config import is_rm_recipe_file
from rlhf.cli.main import RECIPES_DIR, build_parser, main, shorten
from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.controller.preflight import recipe_models
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


def test_recipes_are_grouped_by_the_command_that_runs_them(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    rl_start, rm_start = out.index("RL recipes (rlhf train RECIPE;"), out.index("Reward-model recipes (rlhf rm RECIPE;")
    rl_part, rm_part = out[rl_start:rm_start], out[rm_start:]
    assert rl_start == 0 and "  quickstart " in rl_part and "  algorithms/ppo_gae " in rl_part and "rm/" not in rl_part
    rm_names = [line.split()[0] for line in rm_part.splitlines()[1:]]
    assert rm_names == ["rm/orm_labels_arithmetic", "rm/orm_pairs_arithmetic", "rm/prm_arithmetic"]
    assert "Bradley-Terry ORM on 2-digit addition pairs" in rm_part
    assert len(rl_part.splitlines()) - 1 + len(rm_names) == len(SHIPPED)


@pytest.mark.parametrize("command", ["train", "sft", "plan", "doctor", "eval"])
def test_a_reward_model_recipe_names_the_command_it_is_for(command, tmp_path, capsys):
    target = [str(tmp_path)] if command == "eval" else []  # eval: MODEL RECIPE
    assert main([command, *target, "rm/orm_pairs_arithmetic", f"trainer.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {RECIPES_DIR / 'rm' / 'orm_pairs_arithmetic.yaml'} is a reward-model recipe: run it with "
                   f"`rlhf rm rm/orm_pairs_arithmetic` (`rlhf {command}` runs RL recipes; `rlhf recipes` lists both kinds)")
    assert not (tmp_path / "run").exists()


def test_an_rl_recipe_given_to_rm_names_rlhf_train(tmp_path, capsys):
    assert main(["rm", "quickstart"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {RECIPES_DIR / 'quickstart.yaml'} is an RL recipe: run it with `rlhf train quickstart` "
        "(`rlhf rm` runs reward-model recipes; `rlhf recipes` lists both kinds)")
    mine = tmp_path / "mine.yaml"
    mine.write_text("model: {source: tiny}\ntrainer: {total_steps: 3}\n")
    assert main(["rm", str(mine)]) == 2
    assert f"{mine} is an RL recipe: run it with `rlhf train {mine}`" in capsys.readouterr().err


def test_options_overrides_and_debug_go_in_any_order():
    parse = build_parser().parse_args
    args = parse(["eval", "RUN", "--k", "1,4", "data.eval.size=50", "--debug", "rollout.n=2"])
    assert (args.model_or_run, args.recipe, args.overrides, args.k, args.debug) == ("RUN", "data.eval.size=50", ["rollout.n=2"], "1,4", True)
    args = parse(["train", "quickstart", "trainer.total_steps=2", "--debug"])
    assert (args.recipe, args.overrides, args.debug) == ("quickstart", ["trainer.total_steps=2"], True)
    args = parse(["--debug", "plan", "--json", "quickstart", "a=1", "--devices", "2", "b=2"])
    assert (args.recipe, args.overrides, args.devices, args.json, args.debug) == ("quickstart", ["a=1", "b=2"], 2, True, True)
    assert parse(["export", "--step", "3", "run", "out", "--debug"]).step == 3
    assert parse(["recipes", "--debug"]).debug and not parse(["doctor"]).debug


def test_overrides_after_an_option_reach_the_recipe(capsys):
    assert main(["plan", "quickstart", "--json", "rollout.n=4", "--devices", "1", "data.train_batch_size=4"]) == 2
    assert "data.train_batch_size (4) * rollout.n (4) = 16 sequences per step" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="did you mean 'actor.lr'"):  # --debug after the overrides: the traceback
        main(["validate", "quickstart", "actor.lrr=1", "--debug"])


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "quickstart", "--bogus"], "rlhf: error: unrecognized arguments: --bogus"),
    (["train"], "rlhf train: error: the following arguments are required: recipe\n"),
    (["plan", "quickstart", "--devices", "x"], "rlhf plan: error: argument --devices: invalid int value: 'x'"),
    (["eval", "--k"], "rlhf eval: error: argument --k: expected one argument"),
])
def test_real_mistakes_keep_argparse_messages(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_huge_error_message_is_cut_in_the_middle(tmp_path, capsys):
    (tmp_path / "rewards.py").write_text('raise ValueError("start-of-message " + "x" * 1_000_000 + " end-of-message")\n')
    assert main(["validate", "quickstart", f"reward.sources=[{{type: function, path: '{tmp_path / 'rewards.py'}', name: score}}]"]) == 2
    err = capsys.readouterr().err
    assert len(err) < 2100 and err.count("\n") == 1
    assert err.startswith(f"error: reward.sources.0: cannot import {tmp_path / 'rewards.py'}")
    assert "start-of-message" in err and err.rstrip().endswith("x end-of-message")
    assert int(err.split(" [... ", 1)[1].split(" characters cut ...] ")[0]) > 998_000


def test_shorten_keeps_the_start_and_the_end():
    assert shorten("short") == "short"
    text = "A" * 50 + "B" * 100 + "C" * 50
    assert shorten(text, limit=100) == "A" * 50 + "B" * 25 + " [... 100 characters cut ...] " + "C" * 25


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
