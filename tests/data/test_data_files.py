"""Local data files: encodings other than UTF-8, missing (NaN) ground truths, CSV/TSV/JSON
files and columns named like the trainer's own fields each end in a ConfigError naming the
file, the row and the column with what to do; CSV and TSV files are read as text."""

import json
import math
from pathlib import Path

import pytest
import torch

from rlhf.cli.main import main
from rlhf.config.errors import ConfigError
from rlhf.config.schema import ArithmeticTaskConfig, DatasetConfig
from rlhf.data.fields import RESERVED_FIELDS
from rlhf.data.prompts import load_rows, prompt_batch
from rlhf.models.tokenizer import build_char_tokenizer

ROWS = [{"prompt": "1+1=", "ground_truth": "2"}, {"prompt": "2+3=", "ground_truth": "5"}]


def load(path: Path, **keys) -> list[dict]:
    return load_rows(DatasetConfig(path=str(path), **keys), ArithmeticTaskConfig(), "data.train")


def jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def error_of(path: Path, **keys) -> str:
    with pytest.raises(ConfigError) as error:
        load(path, **keys)
    message = str(error.value)
    assert str(path) in message
    return message


# ---- encodings ---------------------------------------------------------------------------


@pytest.mark.parametrize(("encoding", "expected"), [
    ("utf-16", r"line 1 starts with a UTF-16 \(little-endian\) byte-order mark: the file is UTF-16 encoded, not UTF-8; convert it to UTF-8"),
    ("utf-32", r"line 1 starts with a UTF-32 \(little-endian\) byte-order mark: the file is UTF-32 encoded"),
    ("utf-16-be", r"line 1 holds NUL bytes: the file is probably UTF-16 or UTF-32 encoded; convert it to UTF-8"),
])
def test_a_utf16_or_utf32_file_is_named_with_what_to_do(tmp_path, encoding, expected):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl_text(ROWS), encoding=encoding)
    with pytest.raises(ConfigError, match=f"^data.train.path: '{path}' {expected}"):
        load(path)


def test_a_latin1_byte_names_its_line_and_column(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(jsonl_text(ROWS).encode() + '{"prompt": "café?", "ground_truth": "1"}\n'.encode("latin-1"))
    assert "line 3, byte 16 (0xe9) is not UTF-8; convert it to UTF-8 (e.g. `iconv -f <its encoding> -t UTF-8" in error_of(path)


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl_text(ROWS), encoding="utf-8-sig")
    assert [row["ground_truth"] for row in load(path)] == ["2", "5"]


# ---- missing ground truths -----------------------------------------------------------------


def test_a_json_nan_ground_truth_names_row_and_field(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"prompt": "1+1=", "ground_truth": 2}\n{"prompt": "2+2=", "ground_truth": NaN}\n')
    message = error_of(path)
    assert message.startswith(f"data.train.answer_key: '{path}' row 2: field 'ground_truth' is nan, not a ground truth")
    assert message.endswith("fill it in or drop the row")


def test_parquet_nan_and_null_values_name_row_and_field(tmp_path):
    import datasets

    floats = tmp_path / "floats.parquet"
    datasets.Dataset.from_list([{"q": "1+1=", "a": 2.0}, {"q": "1+2=", "a": 3.0}, {"q": "1+3=", "a": math.nan}]).to_parquet(str(floats))
    assert "row 3: field 'a' is nan, not a ground truth" in error_of(floats, prompt_key="q", answer_key="a")
    nulls = tmp_path / "nulls.parquet"
    datasets.Dataset.from_list([{"q": "1+1=", "a": "2"}, {"q": None, "a": "3"}]).to_parquet(str(nulls))
    message = error_of(nulls, prompt_key="q", answer_key="a")
    assert "data.train.prompt_key" in message and "row 2: field 'q' must be non-empty text (got NoneType None)" in message
    assert message.endswith("a missing value: fill it in or drop the row")


# ---- CSV, TSV, JSON arrays and other formats -------------------------------------------------


def test_csv_rows_are_read_as_written(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text('question,answer,level\n"Add 1, 2 and 3.",006,1\n"Two\nlines: 2+2",4,2\n')
    rows = load(path, prompt_key="question", answer_key="answer")
    assert rows == [
        {"level": "1", "prompt": "Add 1, 2 and 3.", "ground_truth": "006", "data_source": "rows"},
        {"level": "2", "prompt": "Two\nlines: 2+2", "ground_truth": "4", "data_source": "rows"},
    ]
    tsv = tmp_path / "rows.tsv"
    tsv.write_text("prompt\tground_truth\n1+1=\t2\n")
    assert load(tsv)[0]["ground_truth"] == "2"


@pytest.mark.parametrize(("text", "expected"), [
    ("prompt,ground_truth\n1+1=,2\n2+2=,4,extra\n", r"row 2 has 3 values but the header names 2 columns; quote values that contain ','"),
    ("prompt,ground_truth\n1+1=,2\n2+2=,\n", r"data.train.answer_key: '.*' row 2: field 'ground_truth' is '', not a ground truth .* fill it in or drop the row"),
    ("prompt,prompt\n1+1=,2\n", r"the header \(first line\) of .* must name every column once"),
])
def test_bad_csv_rows_are_named(tmp_path, text, expected):
    path = tmp_path / "rows.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load(path)


def test_a_json_array_file_is_read_and_other_formats_are_listed(tmp_path):
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(ROWS, indent=2))
    assert [row["prompt"] for row in load(array)] == ["1+1=", "2+3="]
    sheet = tmp_path / "rows.xlsx"
    sheet.write_bytes(b"PK\x03\x04")
    assert "is a .xlsx file; local data files may be .jsonl, .json, .csv, .tsv, .parquet" in error_of(sheet)


def test_a_csv_recipe_trains_and_a_utf16_file_stops_before_the_run_directory(tmp_path, capsys):
    rows = tmp_path / "sums.csv"
    rows.write_text("prompt,ground_truth\n" + "".join(f"{a}+{b}=,{a + b}\n" for a in range(4) for b in range(4)))
    small = ["sft.enabled=false", "trainer.total_steps=1", "data.train_batch_size=2", "rollout.n=2", "actor.mini_batch_size=4",
             "actor.micro_batch_size=4", f"data.train.path={rows}", f"data.eval.path={rows}", "data.eval.size=4", "sync.check_every=0"]
    assert main(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *small]) == 0
    utf16 = tmp_path / "utf16.csv"
    utf16.write_text(rows.read_text(), encoding="utf-16")
    capsys.readouterr()
    assert main(["train", "quickstart", f"trainer.output_dir={tmp_path / 'bad'}", *small, f"data.train.path={utf16}"]) == 2
    err = capsys.readouterr().err
    assert f"data.train.path: '{utf16}' line 1 starts with a UTF-16" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


# ---- columns named like the trainer's fields ----------------------------------------------


@pytest.mark.parametrize("column", ["response_text", "prompt_text", "scores", "group_index", "advantages"])
def test_a_column_named_like_a_trainer_field_is_refused(tmp_path, column):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl_text([ROWS[0], {**ROWS[1], column: "x"}]))
    message = error_of(path)
    assert message.startswith(f"data.train.path: '{path}' row 2: column '{column}' has the name of a field the trainer sets itself")
    assert "data.train.prompt_key / data.train.answer_key" in message and message.endswith("or drop it")


def test_a_reserved_column_may_be_the_prompt_or_the_answer(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(jsonl_text([{"prompt_text": "1+1=", "scores": "2"}]))
    assert load(path, prompt_key="prompt_text", answer_key="scores") == [{"prompt": "1+1=", "ground_truth": "2", "data_source": "rows"}]


def test_the_reserved_names_cover_what_the_prompt_batch_and_the_rollout_engine_add(tmp_path):
    from transformers import AutoModelForCausalLM

    from rlhf.models.tiny import build_tiny_model
    from rlhf.rollout.base import SamplingParams
    from rlhf.rollout.hf import HFRolloutEngine

    model_dir = build_tiny_model(tmp_path / "tiny", hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    tokenizer = build_char_tokenizer()
    rows = [{"prompt": "1+1=", "ground_truth": "2", "data_source": "x", "level": 1}]
    engine = HFRolloutEngine(AutoModelForCausalLM.from_pretrained(model_dir), tokenizer)
    torch.manual_seed(0)
    out = engine.generate(prompt_batch(rows, tokenizer), SamplingParams(max_new_tokens=3, logprobs=True))
    added = set(out.keys()) - set(rows[0])
    assert added and added <= set(RESERVED_FIELDS)
