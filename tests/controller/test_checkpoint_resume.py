"""Checkpoints and exact resume: N steps, a crash or a SIGTERM, and a resume to 2N
give the metrics of 2N steps straight; checkpoints are complete or absent, and pruned."""

from pathlib import Path

import pytest
from tiny_helpers import comparable_metrics, interrupt_rl_step

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

# a KL term (reference model), an adaptive β, a cosine schedule and 2 PPO epochs: state in
# every part of the loop must come back
ARGS = [
    "trainer.total_steps=4", "trainer.save_every=2", "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4",
    "rollout.n=4", "actor.mini_batch_size=8", "actor.micro_batch_size=4", "actor.ppo_epochs=2", "actor.warmup_steps=1",
    "algorithm.kl.coef=0.01", "algorithm.kl.adaptive=true", "sync.check_every=1", "trainer.eval_every=2",
]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    return read_jsonl(out / "metrics.jsonl")


def test_a_crash_then_resume_gives_the_metrics_of_a_straight_run(tmp_path: Path, monkeypatch, straight):
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 3)
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 1
    assert (out / "checkpoints" / "latest").read_text() == "step_000002"
    monkeypatch.undo()
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    assert comparable_metrics(read_jsonl(out / "metrics.jsonl")) == comparable_metrics(straight)


def test_sigterm_finishes_the_step_checkpoints_and_resumes_exactly(tmp_path: Path, monkeypatch, capsys, straight):
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 3, sigterm=True)
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 130
    assert "stopped by signal 15 after step 3" in capsys.readouterr().err
    assert (out / "checkpoints" / "latest").read_text() == "step_000003"
    monkeypatch.undo()
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    assert comparable_metrics(read_jsonl(out / "metrics.jsonl")) == comparable_metrics(straight)
    # keep_last 2: the step-2 checkpoint was pruned, no temporary directory is left
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step_000003", "step_000004"]


def test_resume_never_refuses_a_directory_that_holds_a_run(tmp_path: Path, capsys, straight):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 0
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, "trainer.resume=never"]) == 2
    assert "already holds a run (metrics.jsonl) with no checkpoint to resume from" in capsys.readouterr().err


@pytest.mark.slow
def test_a_vllm_run_resumes_exactly(tmp_path: Path, monkeypatch):
    """vLLM draws each sampled row's seed from a stream of its own; the checkpoint keeps it."""
    pytest.importorskip("vllm")
    args = [*ARGS, "rollout.engine=vllm", "rollout.logprobs=true", "rollout.vllm.kv_cache_gb=0.05"]
    straight_run = tmp_path / "straight"
    assert main(["train", "quickstart", f"trainer.output_dir={straight_run}", *args]) == 0
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 3)
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *args]) == 1
    monkeypatch.undo()
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *args]) == 0
    assert comparable_metrics(read_jsonl(out / "metrics.jsonl")) == comparable_metrics(read_jsonl(straight_run / "metrics.jsonl"))


def test_a_checkpoint_with_a_part_missing_is_never_marked_latest(tmp_path: Path, monkeypatch, capsys):
    """On a cluster each rank writes its own file into the run directory; one written elsewhere
    (a disk of its own node) leaves a hole. Simulated here by a roles object that expects the
    file of a second rank: the save stops naming it, and `latest` keeps the last complete one."""
    from rlhf.controller import roles as roles_module

    out = tmp_path / "run"
    real_build = roles_module.build_roles

    def build_with_a_missing_rank(run):
        built = real_build(run)
        expected = built.processes.checkpoint_parts
        if run.config.trainer.total_steps == 4:  # the second launch: rank 1 "writes elsewhere"
            monkeypatch.setattr(built.processes, "checkpoint_parts", lambda: [*expected(), "process_default_rank1.pt"])
        return built

    monkeypatch.setattr("rlhf.controller.loop.build_roles", build_with_a_missing_rank)
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, "trainer.total_steps=2"]) == 0
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 1
    err = capsys.readouterr().err
    assert "checkpoint step_000004 is incomplete: process_default_rank1.pt missing" in err
    assert "trainer.output_dir must be on a filesystem every node shares" in err
    assert (out / "checkpoints" / "latest").read_text() == "step_000002"
    assert not (out / "checkpoints" / "step_000004").exists()


def test_an_empty_latest_pointer_is_named(tmp_path: Path, capsys, straight):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS, "trainer.total_steps=2"]) == 0
    (out / "checkpoints" / "latest").write_text("")
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *ARGS]) == 2
    assert f"trainer.resume: {out / 'checkpoints' / 'latest'} names '', which is no checkpoint" in capsys.readouterr().err
