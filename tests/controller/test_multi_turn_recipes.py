"""The multi-turn recipes shrunk to a CPU (tiny model, tiny local data, short episodes):
everything else is the recipe's own (the python tool's sandbox, the reward source, ArCHer).
The 8-GPU MATH recipe's variant runs on Ray in tests/distributed/test_multi_turn_backends.py."""

from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import tiny_overrides

from rlhf.cli.main import main
from rlhf.logging.jsonl import read_jsonl

pytestmark = pytest.mark.slow


def run_tiny(recipe: str, tmp_path: Path) -> list[dict]:
    assert main(["train", recipe, *tiny_overrides(recipe, tmp_path)]) == 0
    return read_jsonl(tmp_path / "run" / "metrics.jsonl")


def test_gsm8k_python_tool_tiny(tmp_path: Path):
    records = run_tiny("multi_turn/gsm8k_python_tool_qwen2.5-1.5b", tmp_path)
    assert {"env/turns_mean", "env/tool_calls_mean", "actor/pg_loss", "eval/turns_mean"} <= set(records[-1])


def test_twenty_questions_archer_tiny(tmp_path: Path):
    records = run_tiny("multi_turn/twenty_questions_qwen2.5-1.5b", tmp_path)
    assert {"archer/q_loss", "archer/buffer_turns", "env/success_rate", "eval/success_rate"} <= set(records[-1])


def test_calculator_tool_tiny(tmp_path: Path):
    records = run_tiny("multi_turn/calculator_tool", tmp_path)
    assert {"env/tool_calls_mean", "reward/arithmetic/mean", "env/success_rate"} <= set(records[-1])
