"""scripts/prepare_gsm8k.py and scripts/prepare_math.py: local parquet a recipe reads with the
default keys. The hub is not reachable here, so the scripts read local files in the datasets'
own formats (the real GSM8K test split; MATH rows written in MATH's format)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf.config.schema import ArithmeticTaskConfig, DatasetConfig
from rlhf.data.prompts import load_rows

ROOT = Path(__file__).resolve().parents[2]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], capture_output=True, text=True, cwd=ROOT, timeout=120)


def load(path: Path, **keys) -> list[dict]:
    return load_rows(DatasetConfig(path=str(path), **keys), ArithmeticTaskConfig(), "data.train")


@pytest.mark.skipif(not GSM8K.is_file(), reason="../shared/data/gsm8k is not here")
def test_prepare_gsm8k_writes_parquet_a_recipe_reads_with_default_keys(tmp_path):
    done = run_script("prepare_gsm8k.py", "--out", str(tmp_path), "--train", "", "--test", str(GSM8K))
    assert done.returncode == 0, done.stderr
    assert "1319 rows" in done.stdout and not (tmp_path / "train.parquet").exists()
    rows = load(tmp_path / "test.parquet")
    assert len(rows) == 1319 and rows[0]["ground_truth"] == "18" and rows[0]["data_source"] == "gsm8k"
    assert rows[0]["answer"].endswith("#### 18") and all("," not in row["ground_truth"] for row in rows)
    # the shipped recipes' keys read the same file: offline needs only the path changed
    as_recipe = load(tmp_path / "test.parquet", prompt_key="question", answer_key="answer", answer_extractor="gsm8k")
    assert [row["prompt"] for row in as_recipe] == [row["prompt"] for row in rows]
    assert [row["ground_truth"].replace(",", "") for row in as_recipe] == [row["ground_truth"] for row in rows]


def test_prepare_math_keeps_level_and_type_and_extracts_the_boxed_answer(tmp_path):
    source = tmp_path / "math.jsonl"
    rows = [
        {"problem": "What is $1/2 + 1/2$?", "level": "Level 1", "type": "Prealgebra", "solution": "It is $\\boxed{1}$."},
        {"problem": "Solve $x^2=4$, $x>0$.", "level": "Level 2", "type": "Algebra", "solution": "So $x=\\boxed{\\sqrt{4}}$, i.e. 2."},
    ]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = run_script("prepare_math.py", "--out", str(tmp_path / "out"), "--train", str(source), "--test", "")
    assert done.returncode == 0, done.stderr
    loaded = load(tmp_path / "out" / "train.parquet")
    assert [row["ground_truth"] for row in loaded] == ["1", "\\sqrt{4}"]
    assert [row["type"] for row in loaded] == ["Prealgebra", "Algebra"] and loaded[0]["data_source"] == "math"
    as_recipe = load(tmp_path / "out" / "train.parquet", prompt_key="problem", answer_key="solution", answer_extractor="boxed")
    assert [row["ground_truth"] for row in as_recipe] == ["1", "\\sqrt{4}"]
    assert [row["ground_truth"] for row in load(tmp_path / "out" / "train.parquet", prompt_key="problem", answer_key="answer")] == ["1", "\\sqrt{4}"]
    per_type = load_rows(DatasetConfig(path=str(tmp_path / "out" / "train.parquet"), source_key="type"), ArithmeticTaskConfig(), "data.eval")
    assert [row["data_source"] for row in per_type] == ["Prealgebra", "Algebra"]


def test_a_row_the_script_cannot_convert_is_named(tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text(json.dumps({"question": "q", "answer": "a #### 1"}) + "\n" + json.dumps({"question": "q", "answer": "no answer"}) + "\n")
    done = run_script("prepare_gsm8k.py", "--out", str(tmp_path / "out"), "--train", str(source), "--test", "")
    assert done.returncode == 1 and f"{source} (train) row 2: ValueError: GSM8K answer without '####'" in done.stderr
    assert not (tmp_path / "out" / "train.parquet").exists()
