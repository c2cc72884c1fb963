"""Reward-model data: jsonl formats with errors naming file and line, held-out splits, and the
token layout of ORM and PRM inputs."""

import json

import pytest

from reward_models.config import RMDataConfig
from reward_models.data import (
    IGNORE_INDEX,
    encode_orm,
    encode_prm,
    load_examples,
    read_jsonl,
)
from rlhf.config.errors import ConfigError
from rlhf.models.tokenizer import build_char_tokenizer

EXAMPLES = {
    "orm_pairs": {"prompt": "07+45=", "chosen": "52", "rejected": "42"},
    "orm_labels": {"prompt": "07+45=", "response": "52", "label": 1},
    "prm": {"prompt": "07+45=", "steps": ["7+5=12", "0+4+1=5", "answer 52"], "labels": [1, 1, 1]},
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_jsonl_round_trip_and_held_out_fraction(tmp_path, kind):
    path = write_jsonl(tmp_path / "data.jsonl", [EXAMPLES[kind]] * 20)
    assert read_jsonl(path, kind, "data.source") == [EXAMPLES[kind]] * 20
    train, held_out = load_examples(kind, RMDataConfig(source=path, eval_fraction=0.25))
    assert (len(train), len(held_out)) == (15, 5)


def test_jsonl_with_its_own_eval_file_and_sizes(tmp_path):
    train_path = write_jsonl(tmp_path / "train.jsonl", [EXAMPLES["orm_labels"]] * 10)
    eval_path = write_jsonl(tmp_path / "eval.jsonl", [EXAMPLES["orm_labels"]] * 4)
    train, held_out = load_examples("orm_labels", RMDataConfig(source=train_path, eval_path=eval_path, train_size=3))
    assert (len(train), len(held_out)) == (3, 4)


@pytest.mark.parametrize(("kind", "line", "message"), [
    ("orm_pairs", '{"prompt": "1+1=", "chosen": "2"}', "line 2: missing field 'rejected'"),
    ("orm_labels", '{"prompt": "1+1=", "response": "2", "label": 2}', "line 2: label must be 0 or 1"),
    ("orm_labels", '{"prompt": "1+1=", "response": "2", "label": true}', "line 2: field 'label' must be a int"),
    ("prm", '{"prompt": "1+1=", "steps": ["a", "b"], "labels": [1]}', "line 2: steps and labels must be"),
    ("prm", '[1, 2]', "line 2: expected a JSON object"),
    ("prm", '{"prompt": ', "line 2: invalid JSON"),
])
def test_bad_jsonl_line_is_a_config_error_naming_the_line(tmp_path, kind, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(EXAMPLES[kind]) + "\n" + line + "\n")
    with pytest.raises(ConfigError, match="data.source: .*bad.jsonl ") as error:
        read_jsonl(str(path), kind, "data.source")
    assert message in str(error.value)


def test_missing_jsonl_file(tmp_path):
    with pytest.raises(ConfigError, match="data.eval_path: cannot read"):
        read_jsonl(str(tmp_path / "missing.jsonl"), "prm", "data.eval_path")


def test_orm_input_is_prompt_then_response():
    tokenizer = build_char_tokenizer()
    assert tokenizer.decode(encode_orm(tokenizer, "07+45=", "52")) == "07+45=52"


def test_prm_labels_sit_at_the_separators_only():
    tokenizer = build_char_tokenizer()
    ids, labels = encode_prm(tokenizer, "07+45=", ["7+5=13", "0+4+1=5", "answer 53"], "#", [0, 0, 0])
    assert tokenizer.decode(ids) == "07+45=7+5=13#0+4+1=5#answer 53#"
    separators = [i for i, token in enumerate(ids) if token == tokenizer.convert_tokens_to_ids("#")]
    assert separators == [12, 20, 30]
    assert [labels[i] for i in separators] == [0, 0, 0]
    assert all(label == IGNORE_INDEX for i, label in enumerate(labels) if i not in separators)
    _, unlabelled = encode_prm(tokenizer, "07+45=", ["7+5=12"], "#")
    assert set(unlabelled) == {IGNORE_INDEX}


def test_prm_separator_must_be_one_token_absent_from_the_text():
    tokenizer = build_char_tokenizer()
    with pytest.raises(ConfigError, match="steps.separator: '##' is 2 tokens"):
        encode_prm(tokenizer, "1+1=", ["2"], "##")
    with pytest.raises(ValueError, match="must not occur in the prompt or the steps"):
        encode_prm(tokenizer, "1+1=", ["a#b"], "#", [1])
