"""`rollout.search`: a training step learns from responses a search through a reward model
picks (best-of-N through an ORM, the step beam through a PRM): runs end to end, the chosen
response is the best of its candidates, and the settings that cannot work exit 2."""


import pytest
import torch
from tiny_helpers import tiny_reward_model_dir

from rlhf.cli.main import main
from rlhf.config.search_schema import RolloutSearchConfig
from rlhf.data.prompts import prompt_batch
from rlhf.logging.jsonl import read_jsonl
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.search.training import SearchedResponses

SMALL = ["trainer.total_steps=2", "sft.enabled=false", "data.eval.size=4", "data.train_batch_size=2", "rollout.n=2",
         "actor.mini_batch_size=4", "actor.micro_batch_size=4", "trainer.num_threads=1"]


def reward_model(root, kind: str):
    """A tiny random ORM or PRM (blank-line steps, '#' after each) with `rlhf rm`'s sidecar."""
    return tiny_reward_model_dir(root / kind, kind)


def test_best_of_n_keeps_the_highest_scored_of_each_rows_candidates(tmp_path):
    path = build_tiny_model(tmp_path / "policy", seed=0)
    tokenizer = load_tokenizer(str(path))
    engine = HFRolloutEngine(load_causal_lm(str(path), torch.device("cpu")), tokenizer)
    searched = SearchedResponses(RolloutSearchConfig(strategy="best_of_n", reward_model=str(reward_model(tmp_path, "classifier")), n=4), tokenizer)
    prompts = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in ("1+2=", "30+4=", "7+7=")], tokenizer)
    sampling = SamplingParams(max_new_tokens=6, logprobs=True)
    torch.manual_seed(0)
    chosen, metrics = searched(engine, prompts, sampling)
    torch.manual_seed(0)  # the same candidates again, scored here
    candidates = engine.generate(prompts.repeat_interleave(4), sampling)
    scores = searched.reward_model.scores(candidates).view(3, 4)
    assert chosen["response_text"] == [candidates["response_text"][4 * row + int(scores[row].argmax())] for row in range(3)]
    assert "rollout_logprobs" in chosen and chosen["prompt"] == ["1+2=", "30+4=", "7+7="]
    assert metrics["search/score_chosen"] == pytest.approx(scores.max(dim=1).values.mean().item())
    assert metrics["search/score_chosen"] >= metrics["search/score_mean"]
    assert metrics["search/generated_tokens"] == pytest.approx(candidates["response_mask"].sum().item() / 3)


@pytest.mark.parametrize("strategy, kind", [("best_of_n", "classifier"), pytest.param("step_beam", "two_class", marks=pytest.mark.slow)])
def test_a_run_trains_on_searched_responses(tmp_path, strategy, kind):
    out = tmp_path / "run"
    search = [f"rollout.search.strategy={strategy}", f"rollout.search.reward_model={reward_model(tmp_path, kind)}"]
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, *search]) == 0
    records = [r for r in read_jsonl(out / "metrics.jsonl") if "search/score_chosen" in r]
    assert len(records) == 2
    for record in records:
        assert 0.0 < record["search/generated_tokens"] and record["actor/pg_loss"] == record["actor/pg_loss"]  # finite, not NaN
    if strategy == "step_beam":  # width 2 x k 2 first steps per response, each at least its EOS
        assert all(record["search/generated_tokens"] >= 4 for record in records)


def test_settings_that_cannot_work_exit_2(tmp_path, capsys):
    orm = reward_model(tmp_path, "classifier")
    cases = [
        (["rollout.search.strategy=best_of_n"], "rollout.search.reward_model: best_of_n picks responses through a reward model"),
        (["rollout.search.strategy=vote", f"rollout.search.reward_model={orm}"], "rollout.search.strategy: unknown value 'vote'"),
        (["rollout.search.strategy=best_of_n", f"rollout.search.reward_model={orm}", "rollout.mode=async"], "searches in the synchronous loop"),
        (["rollout.search.strategy=best_of_n", f"rollout.search.reward_model={orm}", "actor.off_policy.correction=tis"], "set actor.off_policy.correction=none"),
        (["rollout.search.strategy=best_of_n", f"rollout.search.reward_model={orm}", "rollout.search.n=0"], "rollout.search.n: must be >= 1, got 0"),
    ]
    for overrides, message in cases:
        assert main(["validate", "quickstart", *overrides]) == 2, overrides
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (overrides, err)
    out = tmp_path / "run"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, "rollout.search.strategy=step_beam", f"rollout.search.reward_model={orm}"]) == 2
    assert "rollout.search.strategy: step_beam scores partial solutions step by step and needs a PRM" in capsys.readouterr().err
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL, "rollout.search.strategy=best_of_n", f"rollout.search.reward_model={tmp_path}"]) == 2
    assert "rollout.search.reward_model: " in capsys.readouterr().err
    assert not out.exists()  # refused before the run directory is made
