"""The built-in task rows: seeded, balanced over the hidden values, the splits in different
orders, rows the environments accept, and no import of rlhf.envs from rlhf.data."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rlhf.data.env_tasks import env_task_rows
from rlhf.envs.guess_number import GuessNumber
from rlhf.envs.twenty_questions import TwentyQuestions, load_catalogue

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["guess_number", "twenty_questions"])
def test_rows_are_the_same_for_the_same_seed_and_differ_between_splits_and_seeds(name):
    train = env_task_rows(name, "train", 64, seed=3)
    assert train == env_task_rows(name, "train", 64, seed=3)
    assert train != env_task_rows(name, "train", 64, seed=4)
    assert [r["ground_truth"] for r in train] != [r["ground_truth"] for r in env_task_rows(name, "test", 64, seed=3)]
    assert all(set(row) >= {"prompt", "ground_truth", "data_source"} and row["data_source"] == name for row in train)


def test_every_hidden_value_appears_equally_often_and_default_sizes_apply():
    counts = Counter(row["ground_truth"] for row in env_task_rows("guess_number", "test", None, 0))
    assert sorted(counts) == sorted(str(i) for i in range(16)) and set(counts.values()) == {4}
    assert len(env_task_rows("guess_number", "train", None, 0)) == 1024
    objects = Counter(row["ground_truth"] for row in env_task_rows("twenty_questions", "train", 40, 0))
    assert set(objects) == set(load_catalogue().objects) and set(objects.values()) <= {2, 3}


def test_guess_number_rows_follow_env_kwargs_n_and_the_environments_accept_every_row():
    rows = env_task_rows("guess_number", "train", 40, 0, options={"n": 8, "other": "ignored"})
    assert {row["prompt"] for row in rows} == {"guess 0-7"} and {row["n"] for row in rows} == {8}
    for row in rows:
        GuessNumber(n=8).reset(row)
    for row in env_task_rows("twenty_questions", "test", 16, 0):
        TwentyQuestions().reset(row)
    assert "0 to 15" in env_task_rows("guess_number", "test", 1, 0, long_prompt=True)[0]["prompt"]


@pytest.mark.parametrize("args, message", [(("chess", "train", 4, 0), "unknown built-in environment task 'chess'"),
                                           (("guess_number", "dev", 4, 0), "unknown split 'dev'"),
                                           (("guess_number", "train", 0, 0), "size of builtin:guess_number"),
                                           (("guess_number", "train", 4, 0, {"n": "8"}), "n must be an integer")])
def test_bad_arguments_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        env_task_rows(*args)


def test_the_data_module_imports_nothing_of_rlhf_envs():
    code = ("import sys; from rlhf.data.env_tasks import env_task_rows; env_task_rows('twenty_questions', 'train', 2, 0); "
            "print(sorted(m for m in sys.modules if m.startswith('rlhf.envs')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
