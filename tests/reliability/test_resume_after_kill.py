"""Regressions found by killing runs (scripts/kill_resume.py): what a kill at an
unlucky moment leaves behind must never stop the same command from resuming."""

import json
from pathlib import Path

import pytest
import torch
from rlhf_harness.faults.kill_resume import TINY
from tiny_helpers import comparable_metrics, interrupt_rl_step

from rlhf.cli.main import main
from rlhf.config.schema import ModelConfig
from rlhf.controller.checkpoint import prune_checkpoints, save_checkpoint
from rlhf.logging.jsonl import read_jsonl
from rlhf.models.load import resolve_model_path

ARGS = [*TINY, "sft.max_steps=2", "trainer.total_steps=4", "trainer.save_every=2"]
LOGS = ("metrics.jsonl", "samples.jsonl", "sft_metrics.jsonl")


def train(out: Path, *extra: str) -> int:
    return main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert train(out) == 0
    return out


def assert_same_logs(out: Path, straight: Path) -> None:
    for name in LOGS:
        assert comparable_metrics(read_jsonl(out / name)) == comparable_metrics(read_jsonl(straight / name)), name


def test_a_run_stopped_before_its_first_checkpoint_starts_afresh(tmp_path, monkeypatch, straight):
    """It used to be refused: 'already holds a run (metrics.jsonl) with no checkpoint'."""
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 1)
    assert train(out) == 1
    assert (out / "metrics.jsonl").exists() and not (out / "checkpoints" / "latest").exists()
    monkeypatch.undo()
    assert train(out) == 0
    assert_same_logs(out, straight)  # SFT ran again: its records replaced, not appended


def test_another_run_in_that_directory_is_still_refused(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 1)
    assert train(out) == 1
    monkeypatch.undo()
    assert train(out, "trainer.seed=1") == 2
    assert "already holds a run (metrics.jsonl) with no checkpoint" in capsys.readouterr().err
    assert read_jsonl(out / "metrics.jsonl")[0]["step"] == 0


def test_a_last_line_cut_short_does_not_stop_the_resume(tmp_path, monkeypatch, straight):
    """It used to fail every resume with a JSONDecodeError."""
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 4)
    assert train(out) == 1
    monkeypatch.undo()
    for name in ("metrics.jsonl", "samples.jsonl"):
        with (out / name).open("a") as handle:
            handle.write('{"step": 4, "rew')
    assert train(out) == 0
    assert_same_logs(out, straight)


def test_read_jsonl_leaves_out_only_a_partial_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "x": 1.')
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    path.write_text('{"step": 0}\n{"step": 1}')  # complete, only the newline missing
    assert read_jsonl(path) == [{"step": 0}, {"step": 1}]
    path.write_text('{"step": 0\n{"step": 1}\n')
    with pytest.raises(json.JSONDecodeError):  # damage inside the file is still an error
        read_jsonl(path)


def test_pruning_never_removes_the_checkpoint_latest_names(tmp_path):
    """A checkpoint newer than `latest` (renamed just before a kill) used to count as one of the
    `keep_last`: a SIGTERM save at an odd step then removed the very checkpoint it wrote."""
    for step in (2, 3, 4):
        (tmp_path / f"step_{step:06d}").mkdir()
    prune_checkpoints(tmp_path, 1, "step_000003")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["step_000003", "step_000004"]


class FakeRoles:
    def save_state(self, directory: Path) -> None:
        torch.save({"weights": torch.ones(2)}, directory / "engine.pt")

    def checkpoint_parts(self) -> list[str]:
        return ["engine.pt"]


class FakeRun:
    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        self.config = type("Config", (), {"trainer": type("Trainer", (), {"keep_last": 1})()})()


def test_a_save_clears_what_earlier_saves_cut_short(tmp_path):
    root = tmp_path / "checkpoints"
    for leftover in (".tmp-step_000004", ".tmp-removed-step_000001"):
        (root / leftover).mkdir(parents=True)
        (root / leftover / "engine.pt").write_bytes(b"half")
    save_checkpoint(FakeRun(tmp_path), FakeRoles(), {}, 2)
    save_checkpoint(FakeRun(tmp_path), FakeRoles(), {}, 4)
    assert sorted(path.name for path in root.iterdir()) == ["latest", "step_000004"]
    assert torch.load(root / "step_000004" / "loop.pt", weights_only=True)["step"] == 4


def test_a_tiny_model_build_cut_short_is_built_again(tmp_path, monkeypatch):
    """A kill in the middle of the build used to leave init_model/config.json without weights,
    which every later launch took for a finished model and failed to load."""
    from rlhf.models import tiny

    def killed_midway(out_dir, **sizes):
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    model = ModelConfig(source="tiny")
    monkeypatch.setattr(tiny, "build_tiny_model", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path(model, tmp_path, seed=0)
    assert not (tmp_path / "init_model").exists()
    monkeypatch.undo()
    path = resolve_model_path(model, tmp_path, seed=0)
    assert (Path(path) / "model.safetensors").exists() and not (tmp_path / ".tmp-init_model").exists()
