"""`rollout.mode: async` and `async_training`: settings that cannot work exit 2 naming the keys,
and say why, before anything is written."""

from __future__ import annotations

import dataclasses
import os

import pytest

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.controller.preflight import load_checked_recipe

ASYNC = ["model.path=org/some-model", "rollout.mode=async", "trainer.device=cpu"]


def error_of(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_checked_recipe(None, [*ASYNC, *overrides])
    return str(info.value)


def test_the_defaults_are_valid_and_sync_ignores_the_section():
    load_checked_recipe(None, ASYNC)
    load_checked_recipe(None, ["model.path=org/some-model", "async_training.max_staleness=-3", "async_training.buffer_size=1"])


@pytest.mark.parametrize(("overrides", "message"), [
    (["rollout.mode=asynch"], "rollout.mode: unknown value 'asynch' (did you mean 'async'?"),
    (["async_training.max_staleness=-1"], "async_training.max_staleness: must be >= 0, got -1"),
    (["async_training.max_staleness=0"], "async_training.max_staleness: 0 makes every sample on-policy, so the rollout side must wait"),
    (["data.train_batch_size=8", "async_training.buffer_size=5"], "async_training.buffer_size: 5 groups is smaller than one batch (data.train_batch_size = 8)"),
    (["async_training.sync_every=3"], "async_training.sync_every (3) > async_training.max_staleness + 1 (2)"),
    (["async_training.stale=correct"], "async_training.stale: 'correct' keeps samples older than max_staleness, which needs an off-policy correction"),
    (["async_training.stale=keep"], "async_training.stale: unknown value 'keep'"),
    (["async_training.timeout_s=0"], "async_training.timeout_s: must be > 0"),
    (["async_training.rollout_threads=0"], "async_training.rollout_threads: must be >= 1, got 0"),
    (["distributed.backend=ray"], "resources.rollout: rollout.mode: async on the Ray backend streams from a rollout pool of its own"),
    (["distributed.backend=ray", "resources.pools.gen={devices_per_node: 1}", "resources.rollout=gen", "async_training.sync_every=2"],
     "sync.check_every: the check compares the rollout pool's engines with the trainer right after an update"),
    (["distributed.backend=ray", "resources.pools.gen={devices_per_node: 2}", "resources.rollout=gen", "rollout.engine=vllm",
      "rollout.vllm.tensor_parallel_size=2"], "rollout.vllm.tensor_parallel_size: 2 spans one engine over several rollout workers"),
    (["async_training.rollout_cpus=[4096]"], "async_training.rollout_cpus: CPU ids [4096] are not among those this process may use"),
    (["env.type=guess_number", "env.max_total_tokens=1024", "async_training.partial=true"], "async_training.partial: an episode of a multi-turn run (env.type) is played with one"),
])
def test_settings_that_cannot_work_name_the_keys(overrides, message):
    assert message in error_of(*overrides)


def test_partial_rollouts_need_an_engine_that_can_pause(monkeypatch):
    from rlhf.rollout.registry import ROLLOUT_ENGINES

    load_checked_recipe(None, [*ASYNC, "async_training.partial=true", "rollout.engine=vllm"])  # both built-in engines pause
    monkeypatch.setitem(ROLLOUT_ENGINES, "vllm", dataclasses.replace(ROLLOUT_ENGINES["vllm"], can_pause=False))
    assert ("async_training.partial: pausing a generation for new weights needs a rollout.engine that can pause (hf)"
            in error_of("async_training.partial=true", "rollout.engine=vllm"))


def test_a_multi_turn_run_may_be_async():
    load_checked_recipe(None, [*ASYNC, "env.type=guess_number", "env.max_total_tokens=1024"])


def test_correct_mode_with_a_correction_is_valid():
    load_checked_recipe(None, [*ASYNC, "async_training.stale=correct", "actor.off_policy.correction=decoupled", "async_training.sync_every=5"])


def test_the_rollout_cpus_must_leave_the_trainer_one():
    usable = sorted(os.sched_getaffinity(0))
    assert "leaves the trainer no CPU" in error_of(f"async_training.rollout_cpus=[{', '.join(map(str, usable))}]")


def test_one_cpu_cannot_overlap(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert "needs 2 or more CPU cores (the rollout process and the trainer each need one" in error_of()


def test_the_cli_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "rollout.mode=async", "async_training.max_staleness=0"]) == 2
    assert "async_training.max_staleness" in capsys.readouterr().err
    assert not out.exists()
