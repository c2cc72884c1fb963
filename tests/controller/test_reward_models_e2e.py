"""Reward models in the RL loop: process rewards become token rewards at the step ends, the
outcome score stays on the last token; `rlhf train` runs with a PRM (GAE) and an ORM (GRPO);
bad reward-model kwargs stop the run with exit status 2 and the source's key."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from rlhf.algorithms.token_rewards import outcome_token_rewards
from rlhf.cli.main import RECIPES_DIR, main
from rlhf.config.loader import load_recipe
from rlhf.config.schema import RecipeConfig
from rlhf.controller.roles import build_roles
from rlhf.controller.loop import rollout_source
from rlhf.controller.setup import build_run
from rlhf.controller.step import add_advantages
from rlhf.timing import PhaseTimer
from rlhf.data.batch import Batch
from rlhf.logging.jsonl import read_jsonl
from rlhf.models.tiny_reward import build_tiny_reward_model

SMALL = [
    "trainer.total_steps=2", "sft.enabled=false", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=8", "actor.micro_batch_size=8", "critic.mini_batch_size=8", "critic.micro_batch_size=8",
    "critic.warmup_rl_steps=0",
]
# quickstart responses are a few characters: one step per character gives several steps each
PRM_KWARGS = "{kind: two_class, separator: '#', step_split: '(?<=.)'}"


@pytest.fixture(scope="module")
def reward_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("reward_models")
    return {kind: str(build_tiny_reward_model(root / kind, kind, seed=4)) for kind in ("classifier", "two_class")}


def prm_sources(path: str) -> str:
    kwargs = PRM_KWARGS.replace("{", "{path: " + path + ", ", 1)
    return f"reward.sources=[{{type: arithmetic}}, {{type: prm, weight: 0.5, kwargs: {kwargs}}}]"


def test_token_rewards_are_the_outcome_at_the_end_plus_the_process_rewards():
    config = RecipeConfig()
    config.algorithm.advantage, config.algorithm.gamma = "reinforce_pp", 1.0
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
    process = torch.tensor([[-0.25, 0.0, -0.5, 0.0, 0.0], [0.0, -0.125, 0.0, 0.0, 0.0]])
    outcome = torch.tensor([1.0, 0.0])
    batch = Batch({"response_mask": mask, "scores": outcome + process.sum(-1), "outcome_scores": outcome,
                   "process_token_rewards": process}, {"group_index": [0, 1]})
    add_advantages(SimpleNamespace(config=config), None, batch)
    torch.testing.assert_close(batch["token_rewards"], outcome_token_rewards(outcome, mask) + process)
    # REINFORCE++ returns at gamma 1: the reward still to come, step rewards and outcome
    torch.testing.assert_close(batch["returns"][0], torch.tensor([0.25, 0.5, 0.5, 1.0, 0.0]))


def test_dynamic_sampling_keeps_the_process_rewards_of_whole_groups(tmp_path: Path, reward_models):
    overrides = [*SMALL, "data.dynamic_sampling.max_extra_rounds=1", f"trainer.output_dir={tmp_path / 'run'}",
                 "reward.process.eta=1.0", prm_sources(reward_models["two_class"])]
    run = build_run(load_recipe(RECIPES_DIR / "algorithms" / "dapo.yaml", overrides), "test")
    sampled = rollout_source(run).next_batch(build_roles(run), PhaseTimer())
    batch = sampled.batch
    process, mask = batch["process_token_rewards"], batch["response_mask"]
    assert process.shape == mask.shape and len(batch) == 16
    assert torch.all(process[mask == 0] == 0) and process.count_nonzero() > 0  # eta 1.0: every step is clipped
    torch.testing.assert_close(batch["scores"], batch["outcome_scores"] + process.sum(-1))
    assert {"reward/prm/steps_mean", "reward/prm/process_return_mean"} <= set(sampled.metrics)


def test_train_with_a_prm_and_gae(tmp_path: Path, reward_models):
    out = tmp_path / "prm"
    args = [*SMALL, "algorithm.advantage=gae", "reward.process.refine=clip_delta", "reward.process.eta=1.0", prm_sources(reward_models["two_class"])]
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *args]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    assert records[2]["reward/prm/steps_mean"] > 1
    assert records[2]["reward/prm/process_return_mean"] < 0  # clip at eta 1.0 only penalises
    assert "critic/value_loss" in records[2]


def test_train_with_an_orm_and_grpo(tmp_path: Path, reward_models):
    out = tmp_path / "orm"
    sources = f"reward.sources=[{{type: arithmetic}}, {{type: orm, weight: 0.1, kwargs: {{path: {reward_models['classifier']}, batch_size: 8}}}}]"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, "algorithm.advantage=grpo", sources]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert {"reward/orm/mean", "reward/orm/score_mean"} <= set(records[2])
    assert records[2]["reward/mean"] != 0.0  # the ORM's scores reach the total reward


@pytest.mark.parametrize(("source", "message"), [
    ("{type: prm, kwargs: {kind: two_class, separator: '#'}}", "reward.sources.1: kwargs.path: a prm source needs"),
    ("{type: prm, kwargs: {path: PRM, kind: token_tag, tag: ' ки'}}", "reward.sources.1: kwargs.tag: ' ки' must be a single token"),
    ("{type: orm, kwargs: {path: PRM}}", "reward.sources.1: kwargs.kind: a classifier reward model must have a one-label"),
])
def test_bad_reward_model_kwargs_exit_2(tmp_path: Path, reward_models, capsys, source, message):
    source = source.replace("PRM", reward_models["two_class"])
    code = main(["train", "quickstart", f"trainer.output_dir={tmp_path / 'bad'}", *SMALL, f"reward.sources=[{{type: arithmetic}}, {source}]"])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # stopped before creating the run directory
