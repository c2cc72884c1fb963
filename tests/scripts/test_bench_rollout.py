"""scripts/bench_rollout.py runs and writes both cases, both decode loops timed (numbers are reported, never asserted)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_rollout.py"


@pytest.mark.slow
def test_the_rollout_benchmark_writes_both_cases(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--hidden", "64", "--layers", "1", "--threads", "1", "--repeats", "1", "--max-new-tokens", "8", "--out", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"to the budget", "mixed lengths"}
    for row in results.values():
        assert row["generate_s"] > 0 and row["decode_s"] > 0 and row["static_s"] > 0 and 1 <= row["mean_length"] <= row["max_length"] <= 8
        assert row["static_vs_decode"] == row["decode_s"] / row["static_s"]
    assert "static/dec" in done.stdout
