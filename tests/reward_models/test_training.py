"""`rlhf rm` end to end: each kind trains a tiny model on synthetic arithmetic data, beats
chance clearly on held-out operand pairs, and saves the checkpoint format the RL loop reads."""

import json

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

from reward_models.checkpoint import INFO_FILE
from reward_models.config import load_rm_recipe

pytestmark = pytest.mark.slow  # trains a tiny reward model of each kind first (about 50 s on 2 CPU cores)

MIN_ACCURACY = {"orm_pairs": 0.65, "orm_labels": 0.62, "prm": 0.75}
"""Thresholds well below the measured numbers (see conftest.py); chance: 0.5, ~0.52, ~0.69."""


@pytest.mark.parametrize("kind", ["orm_pairs", "orm_labels", "prm"])
def test_held_out_accuracy_clearly_above_chance(trained_rm, kind):
    result = json.loads((trained_rm(kind) / "eval.json").read_text())
    print(f"{kind}: held-out accuracy {result['accuracy']:.3f} (chance {result['chance']:.3f}), "
          f"trained in {result['train_seconds']} s")
    assert result["kind"] == kind and result["num_examples"] == 1000 and result["train_examples"] == 9000
    assert result["accuracy"] >= MIN_ACCURACY[kind]
    assert result["accuracy"] >= result["chance"] + 0.06
    if kind == "prm":
        assert result["solution_accuracy"] > result["solution_chance"] + 0.1


@pytest.mark.parametrize("kind", ["orm_pairs", "orm_labels"])
def test_orm_checkpoint_is_a_one_label_sequence_classifier(trained_rm, kind):
    model_dir = trained_rm(kind) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
    info = json.loads((model_dir / INFO_FILE).read_text())
    assert info["type"] == "orm" and info["kind"] == "classifier"
    assert info["objective"] == {"orm_pairs": "bradley_terry", "orm_labels": "binary_cross_entropy"}[kind]
    with torch.no_grad():  # one scalar per sequence
        logits = model(**tokenizer(["07+45=52", "07+45=42"], return_tensors="pt")).logits
    assert logits.shape == (2, 1)


def test_prm_checkpoint_is_a_two_class_token_classifier_with_its_separator(trained_rm):
    model_dir = trained_rm("prm") / "model"
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    assert model.config.num_labels == 2 and model.config.step_separator == "#"
    info = json.loads((model_dir / INFO_FILE).read_text())
    assert info == {"type": "prm", "kind": "two_class", "objective": "step_cross_entropy",
                    "input": info["input"], "separator": "#", "step_split": None}


def test_run_directory_holds_the_resolved_recipe(trained_rm):
    out = trained_rm("orm_labels")
    config = load_rm_recipe(out / "config.yaml")
    assert config.kind == "orm_labels" and config.train.epochs == 5 and config.output_dir == str(out)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "eval.json", "init_model", "model"]


def test_prm_from_jsonl_starting_from_a_causal_lm(tmp_path):
    """Real-data path: a jsonl file of step-labelled solutions, a pretrained causal LM that gets a
    new two-class head; a tiny budget, so only the outputs are checked."""
    from reward_models.synthetic import step_labelled_solutions
    from rlhf.cli.main import main
    from rlhf.models.tiny import build_tiny_model

    data = tmp_path / "steps.jsonl"
    data.write_text("".join(json.dumps(s) + "\n" for s in step_labelled_solutions("train", size=120)))
    base = build_tiny_model(tmp_path / "base", hidden_size=32, num_layers=1, intermediate_size=64)
    out = tmp_path / "run"
    assert main(["rm", "rm/prm_arithmetic", f"output_dir={out}", f"data.source={data}", "data.eval_fraction=0.25",
                 "model.source=pretrained", f"model.path={base}", "train.epochs=1"]) == 0
    result = json.loads((out / "eval.json").read_text())
    assert (result["train_examples"], result["num_examples"], result["num_steps"]) == (90, 30, 90)
    assert AutoModelForTokenClassification.from_pretrained(out / "model").config.num_labels == 2
