"""Fixtures shared by the worker tests: a tiny model with sharp random weights and a batch of
prompts and answers of different lengths (left-padded prompts, right-padded responses)."""

import pytest
import torch

from rlhf.controller.sft import sft_batch
from rlhf.data.batch import Batch
from rlhf.data.prompts import prompt_batch
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from tiny_helpers import sharpen_weights

ROWS = [
    {"prompt": "1+2=", "ground_truth": "3"},
    {"prompt": "10+20+30=", "ground_truth": "60"},
    {"prompt": "7+45=", "ground_truth": "52"},
    {"prompt": "999+1=", "ground_truth": "1000"},
    {"prompt": "5+5=", "ground_truth": "10"},
    {"prompt": "12+345=", "ground_truth": "357"},
]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0))


@pytest.fixture(scope="module")
def tokenizer_and_model(tiny_path):
    """Larger weights than the default init (std 0.02), so log-probs and hidden states are far
    from uniform and an error in positions or masking shows up clearly."""
    return load_tokenizer(tiny_path), sharpen_weights(load_causal_lm(tiny_path, torch.device("cpu")))


@pytest.fixture
def batch(tokenizer_and_model) -> Batch:
    tokenizer, _ = tokenizer_and_model
    return sft_batch(prompt_batch(ROWS, tokenizer), tokenizer)
