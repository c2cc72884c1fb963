"""End to end: the quickstart recipe through `rlhf train` / `rlhf sft` for a few steps."""

import json

import pytest

from rlhf.cli.main import main
from rlhf.config.loader import load_recipe
from rlhf.logging.jsonl import read_jsonl

# Small but real: the full pipeline (tiny model build, SFT, eval, GRPO steps, eval).
SMALL = [
    "trainer.total_steps=2", "sft.max_steps=3", "sft.eval_every=2", "sft.val_size=16",
    "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4", "actor.mini_batch_size=8", "actor.micro_batch_size=4",
]
REQUIRED = ["step", "reward/mean", "response_length/mean", "actor/pg_loss", "actor/entropy", "actor/grad_norm", "actor/approx_kl",
            "actor/skipped_updates", "rollout/logprob_diff", "time/step_s", "time/generate_s", "time/update_s", "perf/tokens_per_s"]


def test_quickstart_two_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert "eval/accuracy" in records[0] and "eval/accuracy" in records[-1]
    for record in records[1:]:
        missing = [k for k in REQUIRED if k not in record]
        assert not missing, f"metrics.jsonl lacks {missing}"
        assert 0.0 <= record["reward/mean"] <= 1.0
    resolved = load_recipe(out / "config.yaml")
    assert resolved.trainer.total_steps == 2 and resolved.trainer.output_dir == str(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2
    assert "held-out accuracy: before RL" in capsys.readouterr().out


def test_refuses_to_overwrite_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("{}\n")
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == "{}\n"


def test_sft_alone_saves_a_loadable_model(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sft"
    assert main(["sft", "quickstart", f"trainer.output_dir={out}", *SMALL]) == 0
    assert AutoModelForCausalLM.from_pretrained(out / "sft_model") is not None
    assert AutoTokenizer.from_pretrained(out / "sft_model").pad_token_id == 0
    assert len(read_jsonl(out / "sft_metrics.jsonl")) >= 2


@pytest.mark.parametrize("extra", [["algorithm.kl.coef=0.05", "algorithm.kl.placement=loss"], ["algorithm.kl.coef=0.05", "algorithm.kl.placement=reward", "algorithm.advantage=drgrpo"], ["model.dtype=bfloat16", "actor.ppo_epochs=2"],
                                   ["algorithm.kl.coef=0.05", "train.max_tokens_per_micro_batch=40"]],
                         ids=["kl-loss", "kl-reward-drgrpo", "bf16-2epochs", "token-budget"])
def test_variants_run(tmp_path, extra):
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "sft.enabled=false", *SMALL, *extra]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert len(records) == 3
    if "algorithm.kl.coef=0.05" in extra:
        assert "kl/sequence_mean" in records[1]


def test_verifier_source_trains_and_leaves_no_worker_processes(tmp_path):
    import multiprocessing

    out = tmp_path / "run"
    sources = "reward.sources=[{type: gsm8k, kwargs: {num_workers: 1, timeout_s: 5.0}}]"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", "sft.enabled=false", *SMALL, sources]) == 0
    record = read_jsonl(out / "metrics.jsonl")[-1]
    assert record["reward/gsm8k/timeouts"] == 0.0 and "reward/gsm8k/accuracy" in record
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(("correction", "update"), [("tis", "actor.mini_batch_size=16"), ("icepop", "actor.ppo_epochs=2")])
def test_an_off_policy_correction_weights_every_step_and_logs_the_mismatch(tmp_path, correction, update):
    """The HF engine samples with the trainer's own weights, so every weight is ~1, nothing is
    masked, and the measured mismatch is at float rounding. With one update per batch (the
    whole batch one mini-batch) the weights come from the update's own forward; with two
    epochs from the old-logprob pass."""
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, "sft.enabled=false",
                 f"actor.off_policy.correction={correction}", update]) == 0
    for record in read_jsonl(out / "metrics.jsonl")[1:]:
        assert record["off_policy/weight_mean"] == pytest.approx(1.0, abs=1e-4)
        assert record["off_policy/masked_token_frac"] == 0.0 and record["off_policy/masked_seq_frac"] == 0.0
        assert 0.0 <= record["rollout/kl_k3"] < 1e-6 and record["off_policy/weight_max"] < 1.001
        assert ("time/old_logprobs_s" in record) == (correction == "icepop")
