"""The field mapping of a dataset: answer extraction, data source, templates, clear errors,
and over-long prompts dropped and counted."""

import json
from pathlib import Path

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.schema import ArithmeticTaskConfig, DataConfig, DatasetConfig
from rlhf.data.fields import default_source, map_rows
from rlhf.data.prompts import drop_long_prompts, load_rows, prompt_batch
from rlhf.models.tokenizer import build_char_tokenizer

GSM8K = Path(__file__).resolve().parents[3] / "shared" / "data" / "gsm8k" / "test.jsonl"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load(path: str, **keys) -> list[dict]:
    return load_rows(DatasetConfig(path=path, **keys), ArithmeticTaskConfig(), "data.train")


@pytest.mark.skipif(not GSM8K.is_file(), reason="../shared/data/gsm8k is not here")
def test_real_gsm8k_rows_get_the_number_after_the_hashes():
    rows = load(str(GSM8K), prompt_key="question", answer_key="answer", answer_extractor="gsm8k")
    assert len(rows) == 1319
    assert rows[0]["prompt"].startswith("Janet") and rows[0]["ground_truth"] == "18"
    assert "answer" not in rows[0] and rows[0]["data_source"] == "test"  # the mapped field is not kept twice
    assert all(row["ground_truth"] and "####" not in row["ground_truth"] for row in rows)


def test_boxed_extractor_reads_nested_braces_and_keeps_metadata(tmp_path):
    rows = [{"problem": "Half of one?", "solution": "It is $\\boxed{\\frac{1}{2}}$.", "level": "Level 1", "type": "Algebra"}]
    loaded = load(write_jsonl(tmp_path / "math.jsonl", rows), prompt_key="problem", answer_key="solution", answer_extractor="boxed")
    assert loaded == [{"level": "Level 1", "type": "Algebra", "prompt": "Half of one?", "ground_truth": "\\frac{1}{2}", "data_source": "math"}]


def test_the_data_source_comes_from_the_key_then_the_name_then_the_row_then_the_path(tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [{"prompt": "a", "ground_truth": 1, "kind": "x", "data_source": "own"}])
    assert load(path, source_key="kind")[0]["data_source"] == "x"
    assert load(path, source="named")[0]["data_source"] == "named"
    assert load(path)[0]["data_source"] == "own"
    bare = write_jsonl(tmp_path / "bare.jsonl", [{"prompt": "a", "ground_truth": 1}])
    assert load(bare)[0]["data_source"] == "bare"
    assert default_source("openai/gsm8k") == "gsm8k" and default_source("builtin:arithmetic") == "arithmetic"


@pytest.mark.parametrize(
    ("rows", "keys", "expected"),
    [
        ([{"q": "a", "ground_truth": 1}, {"question": "b", "ground_truth": 2}], {"prompt_key": "q"}, "data.train.prompt_key: .* row 2 has no field 'q'"),
        ([{"prompt": "a", "ground_truth": None}], {}, "data.train.answer_key: .* row 1: field 'ground_truth' must be text or a number \\(got NoneType"),
        ([{"prompt": "a", "ground_truth": [1]}], {}, "must be text or a number \\(got list"),
        ([{"prompt": "", "ground_truth": "1"}], {}, "data.train.prompt_key: .* row 1: field 'prompt' must be non-empty text"),
        ([{"prompt": "a", "ground_truth": "so #### 1"}, {"prompt": "b", "ground_truth": "no hashes"}], {"answer_extractor": "gsm8k"},
         "data.train.answer_extractor: .* row 2: the 'gsm8k' extractor finds no answer in field 'ground_truth'"),
        ([{"prompt": "a", "ground_truth": "1"}], {"source_key": "topic"}, "data.train.source_key: .* row 1 has no field 'topic'"),
    ],
)
def test_a_bad_row_is_named_with_its_field_file_and_number(tmp_path, rows, keys, expected):
    path = write_jsonl(tmp_path / "rows.jsonl", rows)
    with pytest.raises(ConfigError, match=expected) as error:
        load(path, **keys)
    assert path in str(error.value)


def test_numbers_as_ground_truth_become_text():
    rows = map_rows([{"prompt": "1+1=", "ground_truth": 2}, {"prompt": "half", "ground_truth": 0.5}], DatasetConfig(path="x.jsonl"), "data.train")
    assert [row["ground_truth"] for row in rows] == ["2", "0.5"]


def test_the_prompt_template_fills_in_row_fields():
    tokenizer = build_char_tokenizer()
    batch = prompt_batch([{"prompt": "1+1=", "level": 3}], tokenizer, template="L{level} {prompt}")
    assert batch["prompt_text"] == ["L3 1+1="]
    with pytest.raises(ConfigError, match="data.prompt_template: the template names field 'topic'"):
        prompt_batch([{"prompt": "1+1="}], tokenizer, template="{topic} {prompt}")


def test_over_long_prompts_are_dropped_and_counted():
    rows = [{"prompt": "1" * length, "ground_truth": "1"} for length in (3, 9, 4, 12)]
    data = DataConfig(max_prompt_tokens=4)
    kept, dropped = drop_long_prompts(rows, build_char_tokenizer(), data, "data.train")
    assert [len(row["prompt"]) for row in kept] == [3, 4] and dropped == 2
    # the length counts the prompt as the model sees it
    kept, dropped = drop_long_prompts(rows, build_char_tokenizer(), DataConfig(max_prompt_tokens=7, prompt_template="Q: {prompt}"), "data.train")
    assert [len(row["prompt"]) for row in kept] == [3, 4] and dropped == 2
    with pytest.raises(ConfigError, match="every prompt of data.train \\(4 rows\\) is longer than 2 tokens \\(the shortest has 3\\)"):
        drop_long_prompts(rows, build_char_tokenizer(), DataConfig(max_prompt_tokens=2), "data.train")
