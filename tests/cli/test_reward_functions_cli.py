"""Custom reward functions through `rlhf validate` and `rlhf train`: exit status 2 for a function
that cannot be loaded, 0 for the worked example, 1 for a function that fails mid-run."""

from pathlib import Path

from rlhf.cli.main import RECIPES_DIR, main
from rlhf.logging.jsonl import read_jsonl

SMALL = ["trainer.total_steps=2", "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
         "actor.mini_batch_size=8", "actor.micro_batch_size=4"]
RECIPE = """\
model: {source: tiny}
data:
  train: {path: "builtin:arithmetic"}
  eval: {path: "builtin:arithmetic", split: test}
  max_prompt_tokens: 8
rollout: {max_new_tokens: 5}
reward:
  sources: [{type: function, path: rewards.py, name: score}]
"""


def write_run(tmp_path: Path, rewards: str) -> Path:
    (tmp_path / "rewards.py").write_text(rewards)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    return recipe


def test_validate_missing_function_exits_2(tmp_path, capsys):
    recipe = write_run(tmp_path, "def other(prompt, response, ground_truth):\n    return 0.0\n")
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reward.sources.0: ") and "has no function 'score'" in err
    assert str(tmp_path / "rewards.py") in err and "Traceback" not in err


def test_worked_example_trains(tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(RECIPES_DIR / "examples" / "custom_reward.yaml"), f"trainer.output_dir={out}", *SMALL]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in ("reward/score/mean", "reward/score/right_length", "reward/digits_only/mean"):
        assert key in records[2]
    assert (out / "config.yaml").read_text().count(str(RECIPES_DIR / "examples" / "my_rewards.py")) == 2


FAILS_IN_STEP_2 = """\
CALLS = 0

def score(prompt, response, ground_truth):
    global CALLS
    CALLS += 1
    # 16 calls for the evaluation before RL, 16 (4 prompts x 4 samples) in step 1
    if CALLS == 16 + 16 + 3:
        raise RuntimeError("the judge is unreachable")
    return float(response == ground_truth)
"""


def test_function_failing_mid_run_exits_1_and_keeps_earlier_metrics(tmp_path, capsys):
    recipe = write_run(tmp_path, FAILS_IN_STEP_2)
    out = tmp_path / "run"
    assert main(["train", str(recipe), f"trainer.output_dir={out}", *SMALL]) == 1
    err = capsys.readouterr().err
    assert "RewardFunctionError: reward function 'score'" in err and "raised on sample 2" in err
    assert "RuntimeError: the judge is unreachable" in err and str(tmp_path / "rewards.py") in err
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1]


def test_a_huge_message_from_a_reward_function_is_cut_and_names_the_function(tmp_path, capsys):
    recipe = write_run(tmp_path, 'def score(prompt, response, ground_truth):\n    raise ValueError("x" * 1_000_000 + " the end")\n')
    assert main(["train", str(recipe), f"trainer.output_dir={tmp_path / 'run'}", *SMALL]) == 1
    err = capsys.readouterr().err
    assert len(err) < 2200 and err.startswith("error: RewardFunctionError: reward function 'score'")
    assert "characters cut ...]" in err and err.rstrip().endswith("(run with --debug for the full traceback)")
