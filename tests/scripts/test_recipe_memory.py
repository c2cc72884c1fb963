"""scripts/recipe_memory.py: every shipped recipe has a tiny CPU variant, and a smoke run of one
recipe (with a verifier worker, so that the process tree has children) reports its peaks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rlhf_harness.tiny_recipes import TINY_VARIANTS, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "recipe_memory.py"


def test_every_top_level_and_multi_turn_recipe_has_a_tiny_variant():
    shipped = {path.stem for path in (ROOT / "recipes").glob("*.yaml")}
    shipped |= {f"multi_turn/{path.stem}" for path in (ROOT / "recipes" / "multi_turn").glob("*.yaml")}
    assert shipped == set(TINY_VARIANTS)


def test_an_unknown_recipe_names_the_known_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="recipes with one: quickstart, gsm8k_grpo_orm"):
        tiny_overrides("nope", tmp_path)


@pytest.mark.slow
def test_smoke_one_recipe(tmp_path: Path):
    out = tmp_path / "memory.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--recipes", "gsm8k_grpo_qwen2.5-0.5b", "--steps", "1", "--out", str(out)],
        check=False, capture_output=True, text=True, env=env, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    row, = json.loads(out.read_text())["recipes"]
    assert row["recipe"] == "gsm8k_grpo_qwen2.5-0.5b" and row["returncode"] == 0 and row["left_behind"] == []
    assert row["main_peak_mib"] > 100 and row["tree_peak_sum_mib"] > row["main_peak_mib"]  # + the verifier's processes
    assert row["processes"] >= 3 and row["tree_rss_max_mib"] > 0
    assert row["plan"]["peak_mib"] > 0
    assert "gsm8k_grpo_qwen2.5-0.5b" in done.stdout and "main peak" in done.stdout
