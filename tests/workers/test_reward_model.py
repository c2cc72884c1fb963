"""The reward_model role against manual forward passes of tiny reward models: scores read at the
right token whatever the padding, probabilities as hand-written softmaxes, left truncation."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoModelForTokenClassification

from rlhf.models.tiny_reward import build_tiny_reward_model
from rlhf.workers.reward_model import RewardModelWorker, token_id

TEXTS = ["12+30=42", "7", "the sum is 5#", "a#bc#d#"]


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    return {kind: str(build_tiny_reward_model(root / kind, kind, seed=1)) for kind in ("classifier", "verdict", "two_class")}


def encode(worker, texts=TEXTS):
    return [worker.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def alone(model, row):
    """Logits of one unpadded row [1, T, ...] (or [1, labels] for a sequence classifier)."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([row])).logits


def test_classifier_reads_the_last_token_with_padding_in_the_batch(paths):
    worker = RewardModelWorker(paths["classifier"], "classifier", batch_size=3)
    rows = encode(worker)
    model = AutoModelForSequenceClassification.from_pretrained(paths["classifier"])
    expected = torch.stack([alone(model, row)[0, 0] for row in rows])
    scores = worker.sequence_scores(rows)
    assert scores.shape == (4,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    assert scores.std() > 0.1  # distinct rows, distinct scores: a wrong position would show


def test_verdict_is_a_softmax_at_the_next_token(paths):
    worker = RewardModelWorker(paths["verdict"], "verdict", batch_size=2)
    rows = encode(worker)
    model = AutoModelForCausalLM.from_pretrained(paths["verdict"])
    yes, no = token_id(worker.tokenizer, "Y", "kwargs.verdict_token"), token_id(worker.tokenizer, "N", "kwargs.negative_token")
    last = torch.stack([alone(model, row)[0, -1] for row in rows])
    torch.testing.assert_close(worker.sequence_scores(rows, yes), last.softmax(-1)[:, yes], atol=1e-6, rtol=1e-5)
    pair = torch.exp(last[:, yes]) / (torch.exp(last[:, yes]) + torch.exp(last[:, no]))
    torch.testing.assert_close(worker.sequence_scores(rows, yes, no), pair, atol=1e-6, rtol=1e-5)


def marker_positions(rows, marker_id):
    return [[i for i, token in enumerate(row) if token == marker_id] for row in rows]


def test_two_class_probabilities_at_the_separators(paths):
    worker = RewardModelWorker(paths["two_class"], "two_class", batch_size=3)
    rows = encode(worker)
    positions = marker_positions(rows, token_id(worker.tokenizer, "#", "kwargs.separator"))
    model = AutoModelForTokenClassification.from_pretrained(paths["two_class"])
    probs = worker.position_probs(rows, positions)
    assert [len(p) for p in probs] == [0, 0, 1, 3]
    for row, row_positions, row_probs in zip(rows, positions, probs):
        expected = alone(model, row)[0, row_positions].softmax(-1)[:, 1]
        torch.testing.assert_close(row_probs, expected, atol=1e-6, rtol=1e-5)
    assert len(set(probs[3].tolist())) == 3


def test_token_tag_probabilities_over_the_label_tokens(paths):
    worker = RewardModelWorker(paths["verdict"], "token_tag", batch_size=2)
    rows = encode(worker)
    positions = marker_positions(rows, token_id(worker.tokenizer, "#", "kwargs.tag"))
    good, bad = token_id(worker.tokenizer, "+", "kwargs.good_token"), token_id(worker.tokenizer, "-", "kwargs.bad_token")
    model = AutoModelForCausalLM.from_pretrained(paths["verdict"])
    probs = worker.position_probs(rows, positions, good, bad)
    for row, row_positions, row_probs in zip(rows, positions, probs):
        logits = alone(model, row)[0, row_positions]
        expected = logits[:, [good, bad]].softmax(-1)[:, 0]
        torch.testing.assert_close(row_probs, expected, atol=1e-6, rtol=1e-5)


def test_max_length_keeps_the_end_and_cut_positions_are_nan(paths):
    worker = RewardModelWorker(paths["two_class"], "two_class", batch_size=4, max_length=4)
    rows = encode(worker, ["a#bc#d#"])  # 7 tokens; the first marker (position 1) is cut
    model = AutoModelForTokenClassification.from_pretrained(paths["two_class"])
    probs = worker.position_probs(rows, [[1, 4, 6]])[0]
    assert probs[0].isnan()
    expected = alone(model, rows[0][-4:])[0, [1, 3]].softmax(-1)[:, 1]
    torch.testing.assert_close(probs[1:], expected, atol=1e-6, rtol=1e-5)
    classifier = RewardModelWorker(paths["classifier"], "classifier", max_length=3)
    seq_model = AutoModelForSequenceClassification.from_pretrained(paths["classifier"])
    torch.testing.assert_close(classifier.sequence_scores(rows), alone(seq_model, rows[0][-3:])[:, 0], atol=1e-5, rtol=1e-5)


def test_multi_token_strings_are_rejected_by_key(paths):
    worker = RewardModelWorker(paths["verdict"], "verdict")
    with pytest.raises(ValueError, match=r"kwargs.tag: ' ки' must be a single token .* 3 tokens"):
        token_id(worker.tokenizer, " ки", "kwargs.tag")


def test_auto_dtype_on_cpu_is_float32_and_the_model_is_frozen(paths):
    worker = RewardModelWorker(paths["classifier"], "classifier")
    assert worker.device.type == "cpu" and not worker.model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in worker.model.parameters())


def test_bad_settings_name_their_key(paths):
    with pytest.raises(ValueError, match="kwargs.kind: unknown"):
        RewardModelWorker(paths["classifier"], "judge")
    with pytest.raises(ValueError, match="kwargs.kind: a classifier reward model must have a one-label"):
        RewardModelWorker(paths["two_class"], "classifier")
    with pytest.raises(ValueError, match="kwargs.path: cannot load"):
        RewardModelWorker(paths["classifier"] + "-missing", "classifier")
    with pytest.raises(ValueError, match="kwargs.dtype"):
        RewardModelWorker(paths["classifier"], "classifier", dtype="fp8")
    with pytest.raises(ValueError, match="kwargs.batch_size"):
        RewardModelWorker(paths["classifier"], "classifier", batch_size=0)
