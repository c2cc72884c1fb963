"""Kill anywhere, resume exactly, the short version of scripts/kill_resume.py: a
tiny run SIGKILLed four times (during startup, inside its first checkpoint write, in the middle
of a step, inside its last checkpoint write), resumed each time, ends as an uninterrupted one."""

import random

import pytest
from rlhf_harness.faults.kill_plan import KillPlan, Timings, choose_kill
from rlhf_harness.faults.kill_resume import Settings, kill_and_resume
from tiny_helpers import comparable_metrics

from rlhf.logging.jsonl import read_jsonl

PLANS = [KillPlan("startup", 0, 1.0), KillPlan("checkpoint", 2, 0.0), KillPlan("step", 3, 0.0), KillPlan("checkpoint", 4, 0.0)]


@pytest.mark.slow
def test_four_kills_then_the_metrics_of_an_uninterrupted_run(tmp_path):
    settings = Settings(tmp_path, kills=len(PLANS), steps=4, save_every=2, plans=PLANS)
    result = kill_and_resume(settings, report=lambda line: None)
    summary = result["summary"]
    assert summary["ok"], summary
    assert summary["kills"] == 4 and summary["max_lost_steps"] <= 2
    assert summary["during_checkpoint_saves"] >= 1, result["kills"]
    # the first checkpoint write was cut: the next launch started afresh, the others resumed
    assert result["kills"][1]["resume_step"] is None and result["kills"][2]["resume_step"] == 2
    for name in ("metrics.jsonl", "samples.jsonl"):
        killed, reference = read_jsonl(tmp_path / "killed" / name), read_jsonl(tmp_path / "reference" / name)
        assert comparable_metrics(killed) == comparable_metrics(reference) and len(reference) >= 5


def test_the_random_kills_spread_over_the_run_and_never_let_it_finish():
    timings = Timings(startup_s=5.0, step_s=0.1, save_s=0.02)
    rng = random.Random(0)
    resume_step, targets = 0, []
    for kills_left in range(20, 0, -1):
        plan = choose_kill(rng, resume_step, kills_left, total_steps=24, save_every=2, timings=timings)
        assert plan.target < 24 or (plan.kind == "checkpoint" and kills_left == 1)  # the final save: only the last kill
        assert resume_step <= plan.target <= resume_step + 4  # at most one checkpoint past the next one
        targets.append(plan.target)
        if plan.kind != "startup":  # as if the kill landed just before its target's checkpoint completed
            resume_step = max(resume_step, (plan.target - 1) // 2 * 2)
    assert max(targets) >= 12  # later parts of the run are reached too
