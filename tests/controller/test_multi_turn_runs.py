"""Multi-turn runs end to end through the CLI: the tiny environment recipes, ArCHer's exact
resume, and a user's environment class whose mistakes are named."""

import json
import multiprocessing
from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import MULTI_TURN_SHORT
from tiny_helpers import comparable_metrics, interrupt_rl_step

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "multi_turn"
SHORT = [*MULTI_TURN_SHORT, "trainer.sample_every=1"]


@pytest.mark.parametrize("recipe", ["guess_number", pytest.param("twenty_questions", marks=pytest.mark.slow)])
def test_an_environment_recipe_trains_and_logs_episodes(tmp_path: Path, recipe: str):
    out = tmp_path / "run"
    assert main(["train", str(RECIPES / f"{recipe}.yaml"), f"trainer.output_dir={out}", *SHORT]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert "eval/success_rate" in records[0] and "eval/turns_mean" in records[0]
    last = records[-1]
    for key in ("env/turns_mean", "env/return_mean", "env/success_rate", "env/truncated_rate", "time/env_s", "eval/success_rate"):
        assert key in last, key
    assert 1 <= last["env/turns_mean"] <= 6
    sample = json.loads((out / "samples.jsonl").read_text().splitlines()[0])
    roles = [turn["role"] for turn in sample["conversation"]]
    assert roles[0] == "user" and roles[1] == "assistant" and sample["turns"] == roles.count("assistant")
    assert len(sample["turn_rewards"]) == sample["turns"] and isinstance(sample["success"], bool)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy_before"] is not None  # the success rate is the run's headline
    assert main(["report", str(out)]) == 0  # the report shows whole conversations
    page = (out / "report.html").read_text()
    assert "agent: " in page and "env: " in page and f"[{sample['turns']} turns, " in page
    if recipe == "guess_number":  # rlhf eval of the run's checkpoint plays greedy episodes too
        assert main(["eval", str(out)]) == 0
        report = json.loads((out / "eval" / "step_000002" / "eval.json").read_text())
        assert report["env"] == "guess_number" and report["num_episodes"] == 8
        assert report["metrics"]["eval/success_rate"] == pytest.approx(last["eval/success_rate"])


def test_turn_level_credit_trains_on_episodes(tmp_path: Path):
    out = tmp_path / "run"
    args = [*SHORT, "algorithm.advantage=turn_rloo", "algorithm.turn_gamma=0.9", "actor.loss_agg=seq-mean-token-sum-norm"]
    assert main(["train", str(RECIPES / "guess_number.yaml"), f"trainer.output_dir={out}", *args]) == 0
    last = read_jsonl(out / "metrics.jsonl")[-1]
    assert last["actor/grad_norm"] > 0 and "env/success_rate" in last


ARCHER = ["trainer.total_steps=4", "trainer.save_every=2", "sft.enabled=false", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=2",
          "actor.mini_batch_size=8", "actor.micro_batch_size=8", "trainer.eval_every=2", "algorithm.advantage=archer",
          "algorithm.archer.critic_updates=2", "algorithm.archer.critic_batch_size=8", "algorithm.archer.buffer_size=64"]


@pytest.mark.parametrize("backbone", ["policy", pytest.param("separate", marks=pytest.mark.slow)])
def test_an_archer_run_resumes_exactly(tmp_path: Path, monkeypatch, backbone: str):
    """The utterance critic, its targets, optimiser and replay buffer (with its sampling
    generator) come back from the checkpoint: crash at step 3, resume, and the metrics equal a
    straight run's."""
    recipe = str(RECIPES / "guess_number.yaml")
    args = [*ARCHER, f"algorithm.archer.backbone={backbone}"]
    straight = tmp_path / "straight"
    assert main(["train", recipe, f"trainer.output_dir={straight}", *args]) == 0
    out = tmp_path / "run"
    interrupt_rl_step(monkeypatch, 3)
    assert main(["train", recipe, f"trainer.output_dir={out}", *args]) == 1
    monkeypatch.undo()
    assert main(["train", recipe, f"trainer.output_dir={out}", *args]) == 0
    resumed, reference = read_jsonl(out / "metrics.jsonl"), read_jsonl(straight / "metrics.jsonl")
    assert {"archer/q_loss", "archer/q_explained_var", "archer/v_explained_var", "archer/advantage_corr"} <= reference[-1].keys()
    assert comparable_metrics(resumed) == comparable_metrics(reference)


USER_ENV = '''
from rlhf.envs.base import Step


class Countdown:
    """Say a number below the last one; 0 wins."""

    def __init__(self, n=32, start=5, fail_on_turn=-1, hang=False):
        self.start, self.fail_on_turn, self.hang, self.turn = start, fail_on_turn, hang, 0

    def reset(self, row):
        return "from " + str(self.start)

    def step(self, action):
        self.turn += 1
        if self.turn - 1 == self.fail_on_turn:
            if self.hang:
                while True:
                    pass
            raise ValueError("the board is on fire")
        won = action.strip().startswith("0")
        return Step("go on", reward=1.0 if won else 0.0, done=won, info={"success": won})

    def demo_action(self, rng):
        return str(rng.randrange(3))
'''


def user_env_args(tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "countdown.py"
    path.write_text(USER_ENV)
    return ["train", str(RECIPES / "guess_number.yaml"), f"trainer.output_dir={tmp_path / 'run'}", "env.type=class", f"env.path={path}",
            "env.name=Countdown", "sft.enabled=false", *SHORT, *extra]


ASYNC = pytest.param(["rollout.mode=async", "data.eval.path="], id="async", marks=pytest.mark.slow)
"""The rollout process plays the episodes, its environment workers its own children (no
held-out evaluation: it would play in the trainer's process and fail there first)."""


@pytest.mark.parametrize("mode", [pytest.param([], id="sync"), ASYNC])
def test_a_users_environment_class_trains_in_worker_processes(tmp_path: Path, mode: list[str]):
    assert main(user_env_args(tmp_path, "env.workers=2", *mode)) == 0
    assert "env/success_rate" in read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("mode", [pytest.param([], id="sync"), ASYNC])
def test_a_step_that_raises_stops_the_run_naming_the_episode_and_turn(tmp_path: Path, capsys, mode: list[str]):
    assert main(user_env_args(tmp_path, "env.kwargs={fail_on_turn: 1}", *mode)) == 1
    error = capsys.readouterr().err
    assert "the board is on fire" in error and "Countdown" in error and "turn 1" in error and "episode" in error
    assert ("the rollout process (pid" in error) == bool(mode)
    assert multiprocessing.active_children() == []


def test_a_step_that_hangs_is_stopped_by_env_timeout_s(tmp_path: Path, capsys):
    assert main(user_env_args(tmp_path, "env.kwargs={fail_on_turn: 0, hang: true}", "env.timeout_s=2")) == 1
    error = capsys.readouterr().err
    assert "env.timeout_s" in error and "turn 0" in error


def test_a_missing_class_is_a_config_error_before_the_run_directory_exists(tmp_path: Path, capsys):
    args = user_env_args(tmp_path)
    args[args.index("env.name=Countdown")] = "env.name=Chess"
    assert main(args) == 2
    assert "Chess" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_warm_start_needs_an_environment_that_demonstrates(tmp_path: Path, capsys):
    args = user_env_args(tmp_path)
    (tmp_path / "countdown.py").write_text(USER_ENV.replace("def demo_action", "def _no_demo"))
    args[args.index("sft.enabled=false")] = "sft.enabled=true"
    assert main(args) == 2
    assert "sft.enabled: the supervised warm start of a multi-turn run imitates" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
