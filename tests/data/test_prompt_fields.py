"""Extra dataset fields travel from the rows to the prompt batch, where reward functions read them."""

import json

from rlhf.config.schema import ArithmeticTaskConfig, DatasetConfig
from rlhf.data.prompts import load_rows, prompt_batch
from rlhf.models.tokenizer import build_char_tokenizer


def test_every_row_field_reaches_the_batch(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"question": "1+1=", "answer": 2, "level": 1}, {"question": "2+2=", "answer": 4, "topic": {"name": "add"}}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = load_rows(DatasetConfig(path=str(path), prompt_key="question", answer_key="answer"), ArithmeticTaskConfig(), "data.train")
    # a field missing from a row is None there, so every row (and batch) has the same fields
    assert loaded == [
        {"level": 1, "prompt": "1+1=", "ground_truth": "2", "data_source": "rows", "topic": None},
        {"level": None, "prompt": "2+2=", "ground_truth": "4", "data_source": "rows", "topic": {"name": "add"}},
    ]
    batch = prompt_batch(loaded[1:], build_char_tokenizer())
    assert batch["level"] == [None] and batch["topic"] == [{"name": "add"}] and batch["prompt_text"] == ["2+2="]


def test_prompt_batch_keeps_fields_of_any_row():
    batch = prompt_batch([{"prompt": "a", "ground_truth": "1"}, {"prompt": "b", "ground_truth": "2", "hint": "h"}], build_char_tokenizer())
    assert batch["hint"] == [None, "h"]
