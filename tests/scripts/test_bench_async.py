"""scripts/bench_async.py runs both arms on a tiny setting and writes their numbers (reported,
never asserted: timings belong to the benchmark, not the tests)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_async.py"
TINY = ["sft.max_steps=3", "sft.val_size=16", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=16",
        "actor.micro_batch_size=8"]


@pytest.mark.slow
@pytest.mark.skipif(not {0, 1} <= os.sched_getaffinity(0), reason="the benchmark pins its two sides to CPUs 0 and 1")
def test_the_async_benchmark_writes_both_arms(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--seeds", "0", "--steps", "3", "--workdir", str(tmp_path / "runs"), "--out", str(out)] + [f"--set={item}" for item in TINY]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    sync, asynchronous = result["runs"]["0"]["sync"], result["runs"]["0"]["async"]
    assert sync["steps"] == asynchronous["steps"] == 3 and sync["samples"] == asynchronous["samples"] == 48
    assert {"generate", "update"} <= set(sync["phases_s"]) and {"trainer_wait", "rollout_wait", "rollout_generate"} <= set(asynchronous["phases_s"])
    assert asynchronous["staleness_max"] <= 1 and asynchronous["dropped"] == 0
    assert result["summary"]["per_seed"]["0"]["speedup"] > 0
    assert "speedup_median" in done.stdout
