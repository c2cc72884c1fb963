"""The user recipes with learned rewards, shrunk to CPU: the hub model, datasets and reward
models are swapped for tiny local ones (`model.path` then names where the tiny policy is built); everything else (sources, refinement, algorithm) is the
recipe's own. Two RL steps each."""

from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import SMALL, gsm8k_rows, math_rows, single_process, write_jsonl

from rlhf.cli.main import main
from rlhf.data.arithmetic import arithmetic_rows
from rlhf.logging.jsonl import read_jsonl
from rlhf.models.tiny_reward import build_tiny_reward_model


@pytest.fixture(scope="module")
def sums() -> list[dict]:
    return [row for row in arithmetic_rows("train", digits=2, test_fraction=0.1, seed=0)[:64]]


def test_gsm8k_grpo_orm_tiny(tmp_path: Path, sums):
    rows = [{"question": f"What is {r['prompt'][:-1]}?", "answer": f"{r['prompt']}{r['ground_truth']}\n#### {r['ground_truth']}"} for r in sums]
    data = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    orm = build_tiny_reward_model(tmp_path / "orm", "classifier", seed=0)
    out = tmp_path / "run"
    args = [
        *SMALL, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.train.name=null", "data.eval.name=null",
        "data.eval.split=train", f"reward.sources.1.kwargs={{path: {orm}, kind: classifier, chat_template: true, batch_size: 4}}",
        "reward.sources.0.kwargs={num_workers: 1}", f"trainer.output_dir={out}",
    ]
    assert main(["train", "gsm8k_grpo_orm", *args]) == 0
    record = read_jsonl(out / "metrics.jsonl")[-1]
    assert {"reward/gsm8k/mean", "reward/orm/mean", "reward/orm/score_mean", "kl/sequence_mean", "actor/pg_loss"} <= set(record)


def test_math_ppo_prm_clip_delta_tiny(tmp_path: Path, sums):
    rows = [{"problem": f"Compute {r['prompt'][:-1]}.", "solution": f"Add: {r['prompt']}{r['ground_truth']}.\n\nSo \\boxed{{{r['ground_truth']}}}."} for r in sums]
    data = write_jsonl(tmp_path / "math.jsonl", rows)
    prm = build_tiny_reward_model(tmp_path / "prm", "two_class", seed=0)
    out = tmp_path / "run"
    args = [
        *SMALL, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.eval.split=train",
        f"reward.sources.1.kwargs={{path: {prm}, kind: two_class, separator: '#', chat_template: true, batch_size: 4}}",
        "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", f"trainer.output_dir={out}",
    ]
    assert main(["train", "math_ppo_prm_clip_delta", *args]) == 0
    record = read_jsonl(out / "metrics.jsonl")[-1]
    expected = {"reward/math/mean", "reward/prm/steps_mean", "reward/prm/process_return_mean", "critic/value_loss", "actor/pg_loss"}
    assert expected <= set(record)


def run_tiny(recipe: str, tmp_path: Path, train: str, test: str, *extra: str) -> list[dict]:
    """Run `recipe` shrunk to CPU (hf rollout, one process) on local data; its metrics."""
    assert main(["train", recipe, *single_process(tmp_path, train, test), *extra]) == 0
    return read_jsonl(tmp_path / "run" / "metrics.jsonl")


def test_gsm8k_grpo_qwen2_5_0_5b_tiny(tmp_path: Path, sums):
    data = write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k_rows(sums))
    records = run_tiny("gsm8k_grpo_qwen2.5-0.5b", tmp_path, data, data, "reward.sources.0.kwargs={num_workers: 1}", "sync.check_every=1")
    assert records[0]["data/train_rows"] == 64 and records[0]["data/train_dropped"] == 0
    assert {"reward/gsm8k/mean", "actor/pg_loss", "eval/accuracy", "sync/probe_logprob_diff_max"} <= set(records[-1])


def test_math_ppo_qwen2_5_math_1_5b_tiny(tmp_path: Path, sums):
    train, test = math_rows(sums)
    records = run_tiny(
        "math_ppo_qwen2.5-math-1.5b", tmp_path, write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test),
        "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}",
    )
    assert {"reward/math/mean", "critic/value_loss", "kl/sequence_mean", "actor/pg_loss", "eval/accuracy"} <= set(records[-1])


def test_math_rloo_t1_tiny(tmp_path: Path, sums):
    train, test = math_rows(sums)
    records = run_tiny(
        "math_rloo_t1", tmp_path, write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test),
        "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", "ref.anchor.every=1",
    )
    assert {"reward/math/mean", "actor/entropy", "kl/sequence_mean"} <= set(records[-1])


def test_math_dapo_tiny(tmp_path: Path, sums):
    train, test = math_rows(sums)
    records = run_tiny(
        "math_dapo", tmp_path, write_jsonl(tmp_path / "train.jsonl", train), write_jsonl(tmp_path / "test.jsonl", test),
        "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", "reward.sources.1.kwargs={max_length: 16, buffer_length: 4, penalty: 1.0}",
        "distributed.backend=local", "train.zero_stage=2", "sync.bucket_mb=1",
    )
    assert {"reward/math/mean", "reward/overlong/mean", "actor/pg_loss"} <= set(records[-1])
