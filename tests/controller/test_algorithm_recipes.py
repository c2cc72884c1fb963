"""Every tiny algorithm recipe in recipes/algorithms/ runs 2 RL steps end to end on CPU
through `rlhf train`, and logs what its algorithm is about."""

from pathlib import Path

import pytest

from rlhf.cli.main import RECIPES_DIR, main
from rlhf.logging.jsonl import read_jsonl

SMALL = [
    "trainer.total_steps=2", "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=8", "actor.micro_batch_size=4", "critic.mini_batch_size=8", "critic.micro_batch_size=4", "critic.warmup_rl_steps=0",
]
RECIPES = sorted(path.stem for path in (RECIPES_DIR / "algorithms").glob("*.yaml"))
EXPECTED_METRICS = {
    "ppo_gae": ["critic/value_loss", "critic/explained_var", "critic/grad_norm", "actor/pg_loss"],
    "ppo_hl_gauss": ["critic/value_loss", "critic/value_mean", "actor/pg_loss"],
    "remax": ["remax/baseline_mean", "actor/pg_loss"],
    "dapo": ["dynamic_sampling/rounds", "dynamic_sampling/dropped_groups", "reward/overlong/mean", "actor/clip_frac_high"],
    "t1": ["kl/sequence_mean", "actor/kl", "actor/entropy"],
    "grpo_adaptive_kl": ["kl/sequence_mean", "kl/coef"],
    "reinforce_pp": ["kl/sequence_mean", "advantage/mean"],
    "reinforce_pp_baseline": ["actor/kl"],
}


def test_every_algorithm_has_a_recipe():
    assert {"ppo_gae", "ppo_hl_gauss", "rloo", "reinforce_pp", "reinforce_pp_baseline", "remax", "drgrpo", "dapo", "gspo", "t1"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_algorithm_recipe_runs_two_steps(tmp_path: Path, recipe: str):
    out = tmp_path / recipe
    assert main(["train", f"algorithms/{recipe}", f"trainer.output_dir={out}", *SMALL]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    for key in ["reward/mean", "time/step_s", *EXPECTED_METRICS.get(recipe, ["actor/pg_loss"])]:
        assert key in records[2], f"{recipe}: step 2 lacks {key}"


def test_critic_warm_up_keeps_the_actor_waiting(tmp_path: Path):
    out = tmp_path / "ppo"
    assert main(["train", "algorithms/ppo_gae", f"trainer.output_dir={out}", *SMALL, "critic.warmup_rl_steps=1"]) == 0
    first, second = read_jsonl(out / "metrics.jsonl")[1:]
    assert "critic/value_loss" in first and "actor/pg_loss" not in first
    assert "actor/pg_loss" in second


def test_adaptive_kl_coefficient_moves(tmp_path: Path):
    out = tmp_path / "kl"
    # with a random model every reward is 0; the entropy bonus alone moves the policy
    args = [*SMALL, "actor.entropy_coef=1.0", "actor.lr=1.0e-2", "actor.warmup_steps=0", "algorithm.kl.kind=k3", "algorithm.kl.target=1.0e-9", "algorithm.kl.horizon=16"]
    assert main(["train", "algorithms/grpo_adaptive_kl", f"trainer.output_dir={out}", *args]) == 0
    first, second = read_jsonl(out / "metrics.jsonl")[1:]
    # step 1 samples from the initial policy, which is the reference: KL 0 < target lowers
    # beta by the most allowed, 20% * 16 samples / horizon 16; after one update KL > target
    assert first["kl/sequence_mean"] == pytest.approx(0.0, abs=1e-6)
    assert first["kl/coef"] == pytest.approx(0.05 * 0.8)
    assert second["kl/sequence_mean"] > 1e-9
    assert second["kl/coef"] == pytest.approx(0.05 * 0.8 * 1.2)
