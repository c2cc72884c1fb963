"""Re-launching a run: a finished run is reported and left untouched; a resumed run refuses the
changes its checkpoint cannot follow (exit 2, nothing written), shows the others and keeps
every launch's config."""

import hashlib
import shutil
from pathlib import Path

import pytest
import yaml

from rlhf.cli.main import RECIPES_DIR, main
from rlhf.config.errors import ConfigError
from rlhf.logging.jsonl import read_jsonl

ARGS = [
    "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=16", "actor.micro_batch_size=16", "trainer.eval_every=1",
]
"""A tiny quickstart: 4 prompts x 4 samples a step (the quickstart's LR has a warm-up)."""


def tree_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under `directory`, by relative path."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


def train(out: Path, *extra: str) -> int:
    return main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run finished at trainer.total_steps=2 (tests copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(out, "trainer.total_steps=2") == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def test_relaunching_a_finished_run_says_so_and_changes_nothing(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = tree_hashes(out)
    for _ in range(2):
        assert train(out, "trainer.total_steps=2") == 0
        printed = capsys.readouterr().out
        assert "this run is finished: its checkpoint step_000002 is at trainer.total_steps=2" in printed
        assert f"{out / 'summary.json'}" in printed and "raise trainer.total_steps" in printed
        assert "another trainer.output_dir" in printed
        assert tree_hashes(out) == before


def test_a_finished_run_reports_changes_it_did_not_apply(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = tree_hashes(out)
    assert train(out, "trainer.total_steps=2", "trainer.log_every=5") == 0
    assert "not applied (no step left to run): trainer.log_every: 25 -> 5" in capsys.readouterr().out
    assert tree_hashes(out) == before


def test_raising_total_steps_continues_and_records_the_launch(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    original = (out / "config.yaml").read_text()
    assert train(out, "trainer.total_steps=3", "trainer.sample_every=1") == 0
    printed = capsys.readouterr().out
    assert "resuming with 2 changed keys" in printed
    assert "trainer.total_steps: 2 -> 3" in printed and "trainer.sample_every: 10 -> 1" in printed
    assert [record["step"] for record in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2, 3]
    assert (out / "config.yaml").read_text() == original  # the config the run started with
    launches = sorted(path.name for path in (out / "configs").iterdir())
    assert launches == ["launch_001.yaml", "launch_002.yaml"]
    assert (out / "configs" / "launch_001.yaml").read_text() == original
    second = (out / "configs" / "launch_002.yaml").read_text()
    assert second.startswith("# resumed; changed since the previous launch: trainer.total_steps: 2 -> 3")
    assert yaml.safe_load(second)["trainer"]["total_steps"] == 3
    # the same command again: finished at its new length
    before = tree_hashes(out)
    assert train(out, "trainer.total_steps=3", "trainer.sample_every=1") == 0
    assert "this run is finished" in capsys.readouterr().out
    assert tree_hashes(out) == before


def test_a_refused_change_exits_2_names_each_key_and_writes_nothing(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = tree_hashes(out)
    refused = ["model.tiny.hidden_size=64", "actor.lr=0.001", "data.eval.size=32", "algorithm.advantage=gae",
               "critic.mini_batch_size=16", "critic.micro_batch_size=16"]
    assert train(out, "trainer.total_steps=4", *refused) == 2
    err = capsys.readouterr().err
    for expected in ("model.tiny.hidden_size: 128 -> 64", "actor.lr: 0.0001 -> 0.001", "data.eval.size: 16 -> 32",
                     "algorithm.advantage: 'grpo' -> 'gae' (a critic exists"):
        assert expected in err
    assert "trainer.total_steps" not in err.split("cannot continue with this recipe")[1]  # allowed: not listed
    assert "Traceback" not in err
    assert tree_hashes(out) == before


def test_total_steps_below_the_checkpoint_exits_2(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    before = tree_hashes(out)
    assert train(out, "trainer.total_steps=1") == 2
    assert "trainer.total_steps: 1 is below the step of the checkpoint to resume" in capsys.readouterr().err
    assert tree_hashes(out) == before


def test_a_new_run_records_its_first_launch(tmp_path):
    out = tmp_path / "run"
    assert train(out, "trainer.total_steps=1") == 0
    assert (out / "configs" / "launch_001.yaml").read_text() == (out / "config.yaml").read_text()


def test_a_finished_run_whose_summary_was_cut_off_gets_it_back_from_its_metrics(finished, tmp_path, capsys):
    out = copy_of(finished, tmp_path)
    summary = (out / "summary.json").read_text()
    (out / "summary.json").unlink()  # a kill between the last checkpoint and the summary
    before = tree_hashes(out)
    assert train(out, "trainer.total_steps=2") == 0
    assert "this run is finished" in capsys.readouterr().out
    rebuilt, original = yaml.safe_load((out / "summary.json").read_text()), yaml.safe_load(summary)
    assert {key: rebuilt[key] for key in ("accuracy_before", "accuracy_after", "steps")} == \
        {key: original[key] for key in ("accuracy_before", "accuracy_after", "steps")}
    assert tree_hashes(out) == {**before, "summary.json": tree_hashes(out)["summary.json"]}


def test_a_start_that_fails_after_creating_the_run_directory_leaves_none(tmp_path, capsys):
    """A model directory whose tokenizer is broken is found out after the directory exists:
    the failed launch removes it rather than leaving a run of one config.yaml."""
    from rlhf.models.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "model", seed=0)
    (model / "tokenizer.json").write_text("{not json")
    out = tmp_path / "run"
    assert main(["train", "quickstart", "model.source=pretrained", f"model.path={model}", "sft.enabled=false", f"trainer.output_dir={out}"]) == 2
    assert "model.path" in capsys.readouterr().err
    assert not out.exists()


def test_rlhf_sft_never_overwrites_the_sft_model_of_an_earlier_launch(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["sft", "quickstart", "sft.max_steps=2", "sft.eval_every=1", "sft.val_size=4", "data.eval.size=4", f"trainer.output_dir={out}"]
    assert main(args) == 0
    digest = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (out / "sft_model").iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds an SFT model" in capsys.readouterr().err
    assert {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (out / "sft_model").iterdir()} == digest


def test_sft_on_ray_needs_a_first_reward_source_that_scores_in_the_driver(tmp_path):
    """On Ray the reward models are served by their worker group, which starts after SFT."""
    from rlhf.config.loader import load_recipe
    from rlhf.controller.setup import build_run
    from rlhf.controller.train import sft_judge
    from rlhf.models.tiny_reward import build_tiny_reward_model

    orm = build_tiny_reward_model(tmp_path / "orm", "classifier", seed=0)
    sources = "reward.sources=[{type: orm, kwargs: {path: " + str(orm) + "}}, {type: arithmetic}]"
    recipe = RECIPES_DIR / "quickstart.yaml"
    run = build_run(load_recipe(recipe, [sources, "distributed.backend=ray", f"trainer.output_dir={tmp_path / 'run'}"]), "test")
    try:
        assert run.reward.sources[0].source.scorer is None  # not loaded in the driver
        with pytest.raises(ConfigError, match=r"reward.sources.0: sft.enabled judges SFT validation in the driver .* \(orm\)"):
            sft_judge(run)
        reordered = build_run(load_recipe(recipe, [sources.replace("[{type: orm", "[{type: arithmetic}, {type: orm").replace("}}, {type: arithmetic}]", "}}]"),
                                                   "distributed.backend=ray", f"trainer.output_dir={tmp_path / 'run2'}"]), "test")
        assert [item.name for item in sft_judge(reordered).sources] == ["arithmetic"]
        reordered.reward.close()
    finally:
        run.reward.close()
