"""Tiny reward-model checkpoints load with their Auto classes and are reproducible."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

from rlhf.models.tiny_reward import build_tiny_reward_model

AUTO = {"classifier": (AutoModelForSequenceClassification, (1, 1)), "two_class": (AutoModelForTokenClassification, (1, 3, 2)),
        "verdict": (AutoModelForCausalLM, (1, 3, 104)), "token_tag": (AutoModelForCausalLM, (1, 3, 104))}


@pytest.mark.parametrize("kind", sorted(AUTO))
def test_each_kind_loads_with_its_auto_class(tmp_path, kind):
    path = build_tiny_reward_model(tmp_path / kind, kind, seed=5)
    auto_class, shape = AUTO[kind]
    model, tokenizer = auto_class.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert model.config.pad_token_id == tokenizer.pad_token_id == 0
    with torch.no_grad():
        assert model(input_ids=torch.tensor([tokenizer("1+2")["input_ids"]])).logits.shape == shape


def test_same_seed_same_weights_and_unknown_kind(tmp_path):
    first = AutoModelForSequenceClassification.from_pretrained(build_tiny_reward_model(tmp_path / "a", "classifier", seed=1))
    second = AutoModelForSequenceClassification.from_pretrained(build_tiny_reward_model(tmp_path / "b", "classifier", seed=1))
    assert all(torch.equal(p, q) for p, q in zip(first.parameters(), second.parameters()))
    with pytest.raises(ValueError, match="unknown tiny reward model kind 'prm'; valid: classifier"):
        build_tiny_reward_model(tmp_path / "c", "prm")
