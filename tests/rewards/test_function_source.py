"""User reward functions (`type: function`): loading, both calling conventions, metrics, and
every error, at build time (ConfigError) and while scoring (RewardFunctionError)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RewardConfig, RewardSourceConfig
from rlhf.data.batch import Batch
from rlhf.rewards.combine import RewardCombiner, build_combiner, build_source
from rlhf.rewards.function import FunctionSource, RewardFunctionError


def write(tmp_path: Path, code: str, name: str = "my_rewards.py") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return path


def batch(responses, truths=None, **fields) -> Batch:
    """Samples as the loop scores them: dataset fields, the rendered prompt, bookkeeping."""
    truths = truths or ["1"] * len(responses)
    prompts = [f"q{i}" for i in range(len(responses))]
    return Batch(non_tensors={
        "prompt": prompts, "ground_truth": list(truths), "data_source": ["arith"] * len(responses),
        **{k: list(v) for k, v in fields.items()}, "prompt_text": [f"<chat>{p}" for p in prompts],
        "group_index": list(range(len(responses))), "response_text": list(responses),
    })


def source(path: Path, name: str = "score", **options) -> FunctionSource:
    return FunctionSource(str(path), name, **options)


def reward_config(path, name="score", **options) -> RewardConfig:
    on_error = options.pop("on_error", "raise")
    return RewardConfig(sources=[RewardSourceConfig(type="function", path=str(path), name=name, **options)], on_error=on_error)


def build_error(path, name="score", extra_fields=None, **options) -> str:
    with pytest.raises(ConfigError) as info:
        build_source(reward_config(path, name, **options), 0, extra_fields)
    return str(info.value)


RECORDS = """
import json
def record(call):  # the function runs in a worker process: it tells the test what it got through a file
    with open(__file__ + ".calls", "a") as handle:
        handle.write(json.dumps(call) + "\\n")
"""


def records(path: Path) -> list:
    """What the functions of `path` passed to `record`, in order."""
    return [json.loads(line) for line in Path(f"{path}.calls").read_text().splitlines()]


EXACT = """
def score(prompt, response, ground_truth, **extra):
    return 1.0 if response.strip() == ground_truth else 0.0
"""


# --- scoring --------------------------------------------------------------------------------

def test_per_sample_function_scores_each_response(tmp_path):
    output = source(write(tmp_path, EXACT)).score(batch(["1", " 1 ", "2"]))
    assert output.scores.tolist() == [1.0, 1.0, 0.0]
    assert output.scores.dtype == torch.float32 and output.metrics == {}


def test_batched_function_gets_lists_once(tmp_path):
    path = write(tmp_path, RECORDS + textwrap.dedent("""
        def score(prompts, responses, ground_truths, **extra):
            record([prompts, responses, ground_truths, extra])
            return [float(len(r)) for r in responses]
    """))
    built = source(path, batched=True)
    assert built.score(batch(["a", "bb", "ccc"], ["x", "y", "z"])).scores.tolist() == [1.0, 2.0, 3.0]
    (call,) = records(path)
    assert call == [["q0", "q1", "q2"], ["a", "bb", "ccc"], ["x", "y", "z"], {"data_source": ["arith"] * 3}]


def test_kwargs_and_extra_fields_arrive(tmp_path):
    path = write(tmp_path, RECORDS + textwrap.dedent("""
        def score(prompt, response, ground_truth, **extra):
            record([prompt, extra])
            return extra["bonus"] * extra["difficulty"]
    """))
    built = source(path, kwargs={"bonus": 2.0})
    output = built.score(batch(["a", "b"], difficulty=[1, 3]))
    assert output.scores.tolist() == [2.0, 6.0]
    # the dataset prompt (not the chat-rendered one); no loop bookkeeping among the extras
    assert records(path)[1] == ["q1", {"data_source": "arith", "difficulty": 3, "bonus": 2.0}]


def test_function_without_var_keyword_gets_only_what_it_names(tmp_path):
    path = write(tmp_path, """
        def score(prompt, response, ground_truth, difficulty, scale=1.0):
            return scale * difficulty
    """)
    built = source(path, kwargs={"scale": 10.0}, extra_fields={"data_source", "difficulty"})
    assert built.score(batch(["a", "b"], difficulty=[1, 2])).scores.tolist() == [10.0, 20.0]


def test_main_arguments_by_name_in_any_order_or_by_position(tmp_path):
    by_name = write(tmp_path, """
        def score(ground_truth, response, prompt):
            return float(ground_truth == "1") + 10 * float(response == "a") + 100 * float(prompt == "q0")
    """, "by_name.py")
    by_position = write(tmp_path, """
        def score(p, r, g, /, **rest):
            return float(g == "1") + 10 * float(r == "a") + 100 * float(p == "q0")
    """, "by_position.py")
    for path in (by_name, by_position):
        assert source(path).score(batch(["a", "b"], ["1", "2"])).scores.tolist() == [111.0, 0.0]


def test_dict_results_log_their_other_numbers_as_means(tmp_path):
    path = write(tmp_path, """
        def score(prompt, response, ground_truth):
            result = {"score": float(response == ground_truth), "length": len(response), "note": "ignored"}
            if response == "1":
                result["exact_bonus"] = True
            return result
    """)
    combiner = build_combiner(reward_config(path))
    total, _, metrics = combiner.score(batch(["1", "22", "333"]))
    assert total.tolist() == [1.0, 0.0, 0.0]
    assert metrics == pytest.approx({"reward/score/mean": 1 / 3, "reward/score/length": 2.0, "reward/score/exact_bonus": 1.0})


def test_numpy_like_and_bool_results_are_numbers(tmp_path):
    path = write(tmp_path, """
        import torch
        def score(prompt, response, ground_truth):
            return torch.tensor(2.5) if response == "t" else response == ground_truth
    """)
    assert source(path).score(batch(["t", "1", "0"])).scores.tolist() == [2.5, 1.0, 0.0]


def test_batched_function_may_return_a_tensor_of_dicts_or_numbers(tmp_path):
    path = write(tmp_path, """
        def as_tensor(prompts, responses, ground_truths):
            import torch  # here, so that only this function's worker imports torch
            return torch.arange(len(responses), dtype=torch.float32)
        def as_dicts(prompts, responses, ground_truths):
            return [{"score": 1.0, "n": len(r)} for r in responses]
    """)
    assert source(path, "as_tensor", batched=True).score(batch(["a", "b"])).scores.tolist() == [0.0, 1.0]
    output = source(path, "as_dicts", batched=True).score(batch(["a", "bbb"]))
    assert output.scores.tolist() == [1.0, 1.0] and output.metrics == {"n": 2.0}


def test_dotted_module_is_imported(tmp_path, monkeypatch):
    write(tmp_path, "", "rlhf_test_dotted_pkg/__init__.py")
    write(tmp_path, EXACT, "rlhf_test_dotted_pkg/rewards.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    built = build_source(reward_config("rlhf_test_dotted_pkg.rewards"), 0).source
    assert built.score(batch(["1", "0"])).scores.tolist() == [1.0, 0.0]
    assert "module rlhf_test_dotted_pkg.rewards" in built.label


def test_two_files_with_the_same_name_stay_apart(tmp_path):
    first = write(tmp_path, "def score(prompt, response, ground_truth):\n    return 1.0\n", "a/rewards.py")
    second = write(tmp_path, "def score(prompt, response, ground_truth):\n    return 2.0\n", "b/rewards.py")
    assert source(first).score(batch(["x"])).scores.tolist() == [1.0]
    assert source(second).score(batch(["x"])).scores.tolist() == [2.0]


# --- build-time errors: ConfigError naming reward.sources.<i>, the function and the file ----

def test_missing_file(tmp_path):
    message = build_error(tmp_path / "nowhere.py")
    assert message.startswith("reward.sources.0: ")
    assert "nowhere.py" in message and "does not exist" in message and "'score'" in message


def test_import_error_shows_the_modules_own_error_line(tmp_path):
    path = write(tmp_path, "import os\nimport rlhf_no_such_module_xyz\n")
    message = build_error(path)
    assert str(path) in message and "'score'" in message
    assert "line 2: ModuleNotFoundError: No module named 'rlhf_no_such_module_xyz'" in message


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "def score(prompt, response, ground_truth)\n    return 1.0\n")
    message = build_error(path)
    assert str(path) in message and "line 1: SyntaxError" in message


def test_exception_at_import_names_the_line(tmp_path):
    path = write(tmp_path, "X = 1\nY = X / 0\n")
    assert "line 2: ZeroDivisionError: division by zero" in build_error(path)


def test_missing_function_lists_the_defined_ones(tmp_path):
    path = write(tmp_path, EXACT + "\ndef helper():\n    pass\n")
    message = build_error(path, name="scorer")
    assert message == f"reward.sources.0: {path} has no function 'scorer' (functions defined there: helper, score)"


def test_name_that_is_not_a_function(tmp_path):
    message = build_error(write(tmp_path, "score = 3\n"))
    assert "reward function 'score'" in message and "is not callable: it is of type int" in message


def test_missing_dotted_module(tmp_path):
    message = build_error("rlhf_no_such_pkg.rewards")
    assert "module 'rlhf_no_such_pkg.rewards' of reward function 'score' was not found" in message


@pytest.mark.parametrize(("signature", "phrase"), [
    ("def score(response):", "cannot be called as (prompt, response, ground_truth, **extra)"),
    ("def score(prompt, response, ground_truth, *, strict):", "requires parameter(s) ['strict']"),
])
def test_signature_that_cannot_take_the_call(tmp_path, signature, phrase):
    path = write(tmp_path, f"{signature}\n    return 0.0\n")
    message = build_error(path, extra_fields={"data_source"})
    assert message.startswith(f"reward.sources.0: reward function 'score' ({path})") and phrase in message


def test_required_dataset_field_is_checked_only_when_fields_are_known(tmp_path):
    path = write(tmp_path, "def score(prompt, response, ground_truth, difficulty):\n    return 0.0\n")
    build_source(reward_config(path), 0, None)  # rlhf validate: the dataset is not loaded
    message = build_error(path, extra_fields={"data_source"})
    assert "requires parameter(s) ['difficulty']" in message and "the rows have: data_source" in message


def test_kwargs_the_function_cannot_take(tmp_path):
    path = write(tmp_path, "def score(prompt, response, ground_truth):\n    return 0.0\n")
    message = build_error(path, kwargs={"scale": 2})
    assert "takes no parameter(s) ['scale']" in message and "**extra" in message


def test_batched_signature_needs_the_plural_names_or_positions(tmp_path):
    path = write(tmp_path, "def score(prompts):\n    return []\n")
    assert "cannot be called as (prompts, responses, ground_truths, **extra)" in build_error(path, batched=True)


# --- scoring-time errors: RewardFunctionError, or counted with on_error: zero ---------------

RAISES = """
def helper(response):
    if response == "bad":
        raise ValueError(f"cannot parse {response!r}")
    return 1.0

def score(prompt, response, ground_truth):
    return helper(response)
"""


def test_exception_names_the_sample_and_shows_the_users_traceback(tmp_path):
    path = write(tmp_path, RAISES)
    with pytest.raises(RewardFunctionError) as info:
        source(path).score(batch(["ok", "ok", "bad"]))
    message = str(info.value)
    first_line, traceback_text = message.split("\n", 1)
    assert f"reward function 'score' ({path}) raised on sample 2" in first_line
    assert "ValueError: cannot parse 'bad'" in first_line and "reward.on_error: zero" in first_line
    assert f"(at line 4 of {path}, in helper)" in first_line  # the user's line, for the CLI's one paragraph
    assert traceback_text.startswith("Traceback (most recent call last):")
    assert str(path) in traceback_text and "in helper" in traceback_text and "in score" in traceback_text
    assert "function.py" not in traceback_text  # trimmed to the user's frames


@pytest.mark.parametrize(("body", "phrase"), [
    ("return float('nan')", "returned nan for sample 1; a score must be finite"),
    ("return float('inf')", "returned inf for sample 1; a score must be finite"),
    ("return 'high'", "returned 'high' (str) for sample 1; a score must be a number"),
    ("return None", "returned None (NoneType) for sample 1"),
    ("return {'value': 1.0}", "returned a dict without a 'score' key for sample 1 (keys: ['value'])"),
    ("return {'score': 1.0, 'mean': 2.0}", "reserved key(s) ['mean'] for sample 1"),
])
def test_bad_results_name_the_sample(tmp_path, body, phrase):
    path = write(tmp_path, f"def score(prompt, response, ground_truth):\n    if response == 'x':\n        {body}\n    return 0.5\n")
    with pytest.raises(RewardFunctionError, match="reward function 'score'") as info:
        source(path).score(batch(["ok", "x"]))
    assert phrase in str(info.value) and str(path) in str(info.value)


def test_batched_wrong_length_or_type(tmp_path):
    path = write(tmp_path, """
        def short(prompts, responses, ground_truths):
            return [1.0] * (len(responses) - 1)
        def scalar(prompts, responses, ground_truths):
            return 1.0
    """)
    with pytest.raises(RewardFunctionError, match=r"batched reward function 'short' .* returned 2 results for 3 samples"):
        source(path, "short", batched=True).score(batch(["a", "b", "c"]))
    with pytest.raises(RewardFunctionError, match=r"returned a float for 3 samples; it must return a list"):
        source(path, "scalar", batched=True).score(batch(["a", "b", "c"]))


def test_batched_exception_names_the_batch(tmp_path):
    path = write(tmp_path, "def score(prompts, responses, ground_truths):\n    raise KeyError('answer')\n")
    with pytest.raises(RewardFunctionError, match=r"raised on a batch of 2 samples: KeyError: 'answer'"):
        source(path, batched=True).score(batch(["a", "b"]))


def test_on_error_zero_scores_failures_zero_and_counts_them(tmp_path):
    path = write(tmp_path, """
        def score(prompt, response, ground_truth):
            return {"boom": lambda: 1 / 0, "nan": lambda: float("nan"), "str": lambda: "x"}.get(response, lambda: 0.5)()
    """)
    output = source(path, on_error="zero").score(batch(["ok", "boom", "nan", "str", "ok"]))
    assert output.scores.tolist() == [0.5, 0.0, 0.0, 0.0, 0.5]
    assert output.metrics == {"errors": 3.0, "nonfinite": 1.0}
    clean = source(path, on_error="zero").score(batch(["ok"]))
    assert clean.metrics == {"errors": 0.0, "nonfinite": 0.0}  # logged every step: a continuous series


def test_on_error_zero_for_a_failing_batched_call(tmp_path):
    path = write(tmp_path, "def score(prompts, responses, ground_truths):\n    return [1.0]\n")
    total, _, metrics = build_combiner(reward_config(path, batched=True, on_error="zero")).score(batch(["a", "b", "c"]))
    assert total.tolist() == [0.0, 0.0, 0.0]
    assert metrics == {"reward/score/mean": 0.0, "reward/score/errors": 3.0, "reward/score/nonfinite": 0.0}


def test_combiner_sums_function_and_builtin_sources(tmp_path):
    path = write(tmp_path, EXACT)
    reward = RewardConfig(sources=[RewardSourceConfig(type="function", path=str(path), name="score"),
                                   RewardSourceConfig(type="arithmetic", weight=0.5)])
    total, per_source, metrics = build_combiner(reward).score(batch(["1", "2"]))
    assert isinstance(build_combiner(reward), RewardCombiner)
    assert total.tolist() == [1.5, 0.0] and set(per_source) == {"score", "arithmetic"}
    assert metrics == {"reward/score/mean": 0.5, "reward/arithmetic/mean": 0.5}
