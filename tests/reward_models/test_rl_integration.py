"""Trained reward models as reward sources of the RL loop: the `type: orm` and `type: prm`
sources read the checkpoints exactly as training evaluated them (same scores, same held-out
accuracy), and a 2-step RL run trains with each as its reward."""

from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from reward_models.data import encode_orm, encode_prm
from reward_models.evaluate import sequence_scores, step_probabilities
from reward_models.synthetic import preference_pairs, step_labelled_solutions
from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl
from rlhf.rewards.registry import build_reward_source
from tiny_helpers import response_batch

pytestmark = pytest.mark.slow  # trains two reward models first (about a minute on 2 CPU cores)

SMALL_RL = [
    "trainer.total_steps=2", "sft.enabled=false", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=4",
    "actor.mini_batch_size=16", "actor.micro_batch_size=16",
]
"""quickstart cut down to 2 RL steps of 4 prompts x 4 samples, without the SFT warm start."""


def test_orm_source_scores_as_training_evaluated(trained_rm):
    path = trained_rm("orm_pairs") / "model"
    source = build_reward_source("orm", {"path": str(path), "kind": "classifier", "batch_size": 64})
    pairs = preference_pairs("test", size=200)
    prompts = [p["prompt"] for p in pairs]
    chosen = source.score(response_batch(prompts, [p["chosen"] for p in pairs])).scores
    rejected = source.score(response_batch(prompts, [p["rejected"] for p in pairs])).scores
    model, tokenizer = AutoModelForSequenceClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    expected = sequence_scores(model, tokenizer, [encode_orm(tokenizer, p["prompt"], p["chosen"]) for p in pairs])
    torch.testing.assert_close(chosen, expected, atol=1e-4, rtol=1e-4)
    assert (chosen > rejected).float().mean().item() >= 0.65


def test_prm_source_scores_steps_as_training_evaluated(trained_rm):
    path = trained_rm("prm") / "model"
    source = build_reward_source("prm", {"path": str(path), "kind": "two_class", "separator": "#", "batch_size": 64})
    solutions = step_labelled_solutions("test", size=200)
    responses = ["\n\n".join(s["steps"]) for s in solutions]  # the default step_split: blank lines
    output = source.score(response_batch([s["prompt"] for s in solutions], responses))
    model, tokenizer = AutoModelForTokenClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    encoded = [encode_prm(tokenizer, s["prompt"], s["steps"], "#", s["labels"]) for s in solutions]
    expected = step_probabilities(model, encoded, tokenizer.pad_token_id)
    for got, want in zip(output.step_scores, expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    labels = torch.tensor([label for s in solutions for label in s["labels"]], dtype=torch.bool)
    assert ((torch.cat(output.step_scores) >= 0.5) == labels).float().mean().item() >= 0.75


@pytest.mark.parametrize(("kind", "source", "advantage"), [
    ("orm_labels", "{type: orm, kwargs: {path: PATH, kind: classifier}}", "grpo"),
    ("prm", "{type: prm, kwargs: {path: PATH, kind: two_class, separator: '#'}}", "reinforce_pp"),
])
def test_two_rl_steps_with_the_trained_reward_model(tmp_path: Path, trained_rm, kind, source, advantage):
    out = tmp_path / "rl"
    sources = "reward.sources=[" + source.replace("PATH", str(trained_rm(kind) / "model")) + "]"
    assert main(["train", "quickstart", f"trainer.output_dir={out}", *SMALL_RL, f"algorithm.advantage={advantage}",
                 sources]) == 0
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [0, 1, 2]
    name = "orm" if kind == "orm_labels" else "prm"
    assert f"reward/{name}/mean" in records[2]
    if name == "prm":
        assert records[2]["reward/prm/steps_mean"] >= 1
