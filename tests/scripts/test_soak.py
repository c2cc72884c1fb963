"""scripts/soak.py and its parts (rlhf_harness.bench.monitor, rlhf_harness.bench.soak): the
arithmetic by hand, the watcher on commands whose behaviour is known, and a short soak of the
quickstart recipe (20 steps, evaluation, checkpoints and samples every 5) that must hold no more
file descriptors at the end than after the warm-up and leave no process behind."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rlhf_harness.bench.monitor import StepReader, Watch, watch_run
from rlhf_harness.bench.soak import slope, summarise

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"
MIB = 2**20


def sample(step: int, rss_mib: float, fds: int = 5) -> dict:
    return {"t": float(step), "step": step, "rss": int(rss_mib * MIB), "hwm": int(rss_mib * MIB), "fds": fds, "tree_rss": int(rss_mib * MIB), "children": 0}


def test_slope_by_hand():
    assert slope([0, 1, 2], [1.0, 3.0, 5.0]) == 2.0
    assert slope([3, 3], [1.0, 9.0]) == 0.0 and slope([1], [1.0]) == 0.0


def test_a_steady_run_passes_and_a_leaking_one_fails():
    steady = Watch(returncode=0, seconds=1.0, samples=[sample(step, 600 + (step % 2)) for step in range(1, 81)])
    summary = summarise(steady, steps=80, warmup=10, window=10, max_growth_mib=32)
    assert summary["failures"] == [] and summary["rss_start_mib"] == 601.0
    assert summary["rss_end_mib"] == 601.0 and summary["fit_steps"] == 69  # steps 10-79: the last step is the run's teardown
    # 1 MiB per step after the warm-up (100 per 100 steps), one more descriptor at the end
    samples = [sample(step, 600 + step, fds=5 + (step > 60)) for step in range(1, 81)]
    samples[0]["files"] = ["/dev/null", "log", "log", "metrics.jsonl", "samples.jsonl"]  # listed where the count changes
    samples[60]["files"] = [*samples[0]["files"], "checkpoints/step_000060/loop.pt"]
    leaking = Watch(returncode=0, seconds=1.0, samples=samples, left_behind=["123 (python) a verifier"])
    failures = summarise(leaking, steps=80, warmup=10, window=10, max_growth_mib=32)["failures"]
    assert len(failures) == 3
    assert "grew 100.0 MiB per 100 steps" in failures[0] and "123 (python)" in failures[2]
    assert "from 5 to 6 (opened since the warm-up: checkpoints/step_000060/loop.pt)" in failures[1]
    # over fewer than 50 steps the slope is not judged (an early Ctrl-C, a short run)
    short = Watch(returncode=130, seconds=1.0, samples=[sample(step, 600 + step) for step in range(1, 31)])
    assert summarise(short, steps=80, warmup=10, window=10, max_growth_mib=32, expect_interrupt=True)["failures"] == []


def test_step_reader_reads_only_complete_lines(tmp_path: Path):
    path = tmp_path / "metrics.jsonl"
    reader = StepReader(path)
    assert reader.latest() is None  # not written yet
    path.write_text('{"step": 0}\n{"step": 1}\n{"st')
    assert reader.latest() == 1
    with path.open("a") as handle:
        handle.write('ep": 2}\n')
    assert reader.latest() == 2


def test_the_watcher_finds_and_kills_what_a_command_leaves_behind(tmp_path: Path):
    # the shell exits at once; its background sleep lives on in the same session
    watch = watch_run(["sh", "-c", "sleep 60 & exit 3"], tmp_path / "metrics.jsonl", tmp_path / "log", interval_s=0.05, linger_s=0.5)
    assert watch.returncode == 3
    assert len(watch.left_behind) == 1 and "sleep 60" in watch.left_behind[0]
    pid = int(watch.left_behind[0].split()[0])
    stat = Path(f"/proc/{pid}/stat")
    assert not stat.exists() or stat.read_text().split(")")[-1].split()[0] in ("Z", "X")  # killed


@pytest.mark.slow
def test_a_short_soak_leaks_no_descriptors_and_no_processes(tmp_path: Path):
    out = tmp_path / "soak.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    # RSS over 20 steps is allocator noise, not a trend: the growth bound is the 200-step soak's
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "20", "--every", "5", "--sft-steps", "0", "--warmup", "6", "--window", "6",
         "--max-growth-mib", "1e9", "--interval", "0.2", "--out", str(out), "data.eval.size=64", "trainer.num_threads=1"],
        check=False, capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["steps_reached"] == 20 and summary["failures"] == []
    assert summary["fds_end_min"] <= summary["fds_after_warmup_min"]
    assert summary["left_behind"] == [] and summary["rss_end_mib"] > 100
    assert "PASS" in done.stdout and "RSS growth after warm-up" in done.stdout
