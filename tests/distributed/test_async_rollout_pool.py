"""An asynchronous Ray run whose rollout pool has two workers (the actor on a pool of one):
both stream groups, every one is trained once and in stream order across a SIGTERM and a
resume, both engines get every update's weights by broadcast, and no worker process is left."""

import os
import time

import pytest
from conftest import TINY_RL, write_recipe
from tiny_helpers import async_run_interrupted_and_resumed

from rlhf.cli.main import main
from rlhf.distributed.group import WorkerGroup
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow

WHOLE_MODEL_BYTES = 1_300_000
"""The tiny model's float32 weights (0.34M), a little rounded down."""


def recording_worker_pids(patcher, pids: list[int]) -> None:
    """Collect the process id of every worker every group of a run starts."""
    real_start = WorkerGroup.start

    def start(self, *args, **kwargs):
        reports = real_start(self, *args, **kwargs)
        pids.extend(self.pids)
        return reports

    patcher.setattr(WorkerGroup, "start", start)


def gone(pid: int, within_s: float = 15.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def test_two_rollout_workers_stream_in_order_and_resume_losing_nothing(tmp_path, ray_cluster, monkeypatch, capsys):
    recipe = write_recipe(tmp_path, TINY_RL.format(zero_stage=3, backend="ray", workers=1, steps=6))
    out = tmp_path / "run"
    args = ["train", str(recipe), f"trainer.output_dir={out}", "resources.pools.gen={devices_per_node: 2}", "resources.rollout=gen",
            "sync.bucket_mb=1", "rollout.mode=async", "sft.max_steps=3", "trainer.sample_every=1", "trainer.num_samples=4",
            "actor.ppo_epochs=1", "async_training.timeout_s=120", "async_training.buffer_size=12"]
    pids: list[int] = []
    with pytest.MonkeyPatch.context() as patcher:
        recording_worker_pids(patcher, pids)
        # steps 1-6 once each, staleness <= max_staleness (1), nothing dropped
        records = async_run_interrupted_and_resumed(main, args, out, 6, monkeypatch, capsys)[1:]

    # every group trained once, in the order it was requested (samples.jsonl holds every group's first response)
    samples = read_jsonl(out / "samples.jsonl")
    assert [sample["group"] for sample in samples] == list(range(24))
    assert [sample["step"] for sample in samples] == [step for step in range(1, 7) for _ in range(4)]
    # both rollout workers served: the first requests alternate over them, later ones go to the less busy
    assert [sample["rollout_rank"] for sample in samples[:4]] == [0, 1, 0, 1]
    assert {sample["rollout_rank"] for sample in samples} == {0, 1}
    assert records[0]["async/groups_from_worker/0"] == records[0]["async/groups_from_worker/1"] == 2  # also in the metrics
    assert all(sum(value for key, value in r.items() if key.startswith("async/groups_from_worker/")) == 4 for r in records)
    # groups 20-23 (buffer_size 12) were still waiting for version 4 (the staleness gate) at the
    # checkpoint after step 3: the resume requested them again, alternating over the workers
    assert [sample["rollout_rank"] for sample in samples[20:]] == [0, 1, 0, 1]
    # every update's weights reached both engines (the whole model each), and what they generate
    # with is the trainer's policy: the probe (split over both) after each update, and the
    # version-0 samples of both workers in step 1 (the mean gap: one update, no old-logprob pass)
    for record in records:
        assert record["sync/bytes"] > 2 * WHOLE_MODEL_BYTES
        assert record["sync/probe_logprob_diff_max"] < 1e-3
    assert records[0]["rollout/logprob_diff"] < 1e-5
    assert [r["async/policy_version"] for r in records] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert sum(record["actor/grad_norm"] > 0 for record in records) >= 3
    # the two runs' workers (two groups, three workers, twice) are all gone
    assert len(pids) == 6
    assert [pid for pid in pids if not gone(pid)] == []
