"""User reward code runs in a worker process: a function that hangs in any way stops at its
timeout_s, one that exits or raises a BaseException fails like any other exception, one that
parses the command line or exits at import is a config error, and an int too large for a float
is a non-finite score. Through `rlhf train` (real runs, real processes) and the source API."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from process_helpers import descendants

from rlhf.cli.main import main
from rlhf.data.batch import Batch
from rlhf.rewards.function import FunctionSource, RewardFunctionError

RECIPE = """\
model: {source: tiny}
data:
  train: {path: "builtin:arithmetic"}
  eval: {path: "builtin:arithmetic", split: test, size: 4}
  max_prompt_tokens: 8
rollout: {max_new_tokens: 5}
sft: {enabled: false}
reward:
  sources: [{type: function, path: rewards.py, name: score, timeout_s: 1.5}]
"""
STARTED = """\
import time
from pathlib import Path

def started():  # tells the test when the first call began
    marker = Path(__file__).with_name("started")
    if not marker.exists():
        marker.write_text(str(time.time()))
"""
HANGS = {
    "own-alarm": """
        import signal

        def score(prompt, response, ground_truth):
            started()
            def give_up(signum, frame):
                raise TimeoutError
            signal.signal(signal.SIGALRM, give_up)
            while True:  # a verifier that guards each step with its own alarm, then clears it
                signal.alarm(30)
                try:
                    time.sleep(0.05)
                finally:
                    signal.alarm(0)
    """,
    "bare-except": """
        def score(prompt, response, ground_truth):
            started()
            while True:
                try:
                    time.sleep(10)
                except:  # swallows every exception, KeyboardInterrupt included
                    pass
    """,
}
RAISES = {
    "sys-exit": ("import sys\ndef score(prompt, response, ground_truth):\n    sys.exit(0)\n", "SystemExit: 0 (at line 3 of"),
    "cancelled": ("import asyncio\ndef score(prompt, response, ground_truth):\n    raise asyncio.CancelledError()\n",
                  "CancelledError (at line 3 of"),
    "keyboard-interrupt": ("def score(prompt, response, ground_truth):\n    raise KeyboardInterrupt\n", "KeyboardInterrupt (at line 2 of"),
    "os-exit": ("import os\ndef score(prompt, response, ground_truth):\n    os._exit(9)\n", "crashed on sample 0 (response "),
    "overflow": ("def score(prompt, response, ground_truth):\n    return 10**400\n",
                 f"returned 1{'0' * 56}... (int of 401 digits) for sample 0, too large for a float; a score must be finite"),
}


def train(tmp_path: Path, rewards: str, *overrides: str) -> int:
    (tmp_path / "rewards.py").write_text(rewards)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return main(["train", str(tmp_path / "recipe.yaml"), f"trainer.output_dir={tmp_path / 'run'}", "trainer.total_steps=1", *overrides])


def error_line(capfd) -> str:
    """The run's one error line (stderr of this process and of the worker)."""
    err = capfd.readouterr().err
    assert "Traceback" not in err and "usage:" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", sorted(HANGS))
def test_a_hanging_function_stops_the_run_at_its_timeout(tmp_path, capfd, kind):
    before = descendants()
    assert train(tmp_path, STARTED + textwrap.dedent(HANGS[kind])) == 1
    stopped = time.time() - float((tmp_path / "started").read_text())
    assert stopped < 1.5 + 3
    line = error_line(capfd)
    assert line.startswith(f"error: RewardFunctionError: reward function 'score' ({tmp_path / 'rewards.py'}) did not return "
                           "within its timeout_s of 1.5 s on sample 0")
    assert descendants() - before == set()  # the worker is gone


@pytest.mark.parametrize("kind", sorted(RAISES))
def test_exits_base_exceptions_and_overflow_fail_like_exceptions(tmp_path, capfd, kind):
    code, phrase = RAISES[kind]
    before = descendants()
    assert train(tmp_path, code) == 1
    line = error_line(capfd)
    assert line.startswith(f"error: RewardFunctionError: reward function 'score' ({tmp_path / 'rewards.py'}) ")
    assert phrase in line and "sample 0" in line
    if kind == "os-exit":
        assert line.endswith("its process exited with status 9; set reward.on_error: zero to score failing samples 0.0 and "
                             "count them instead (run with --debug for the full traceback)")
    assert descendants() - before == set()


IMPORT_FAILS = {
    "argparse": (
        "import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--judge-url', required=True)\nARGS = parser.parse_args()\n",
        "line 4: SystemExit: 2 (it exited while being imported, after printing 'rewards.py: error: the following arguments are "
        "required: --judge-url'; the file is imported, not run",
    ),
    "sys-exit": ("import sys\nsys.exit(0)\n", "line 2: SystemExit: 0 (it exited while being imported;"),
    "keyboard-interrupt": ("raise KeyboardInterrupt\n", "line 1: KeyboardInterrupt"),
    "cancelled": ("import asyncio\nraise asyncio.CancelledError()\n", "line 2: CancelledError"),
}


@pytest.mark.parametrize("kind", sorted(IMPORT_FAILS))
def test_a_module_that_exits_at_import_is_a_config_error(tmp_path, capfd, kind):
    code, phrase = IMPORT_FAILS[kind]
    before = descendants()
    assert train(tmp_path, code + "def score(prompt, response, ground_truth):\n    return 1.0\n") == 2
    line = error_line(capfd)
    assert line.startswith(f"error: reward.sources.0: cannot import {tmp_path / 'rewards.py'} (for reward function 'score'): ")
    assert phrase in line
    assert descendants() - before == set()


def test_the_module_sees_a_neutral_command_line(tmp_path):
    """argparse at module level parses the file's own (empty) command line, not the trainer's."""
    (tmp_path / "rewards.py").write_text(
        "import argparse, sys\nparser = argparse.ArgumentParser()\nparser.add_argument('--scale', type=float, default=1.0)\n"
        "ARGS = parser.parse_args()\nopen(__file__ + '.argv', 'w').write(repr(sys.argv))\n"
        "def score(prompt, response, ground_truth):\n    return ARGS.scale\n")
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    assert main(["validate", str(tmp_path / "recipe.yaml"), "trainer.total_steps=3"]) == 0
    assert (tmp_path / "rewards.py.argv").read_text() == repr([str(tmp_path / "rewards.py")])


def batch(responses) -> Batch:
    return Batch(non_tensors={"prompt": ["q"] * len(responses), "prompt_text": ["q"] * len(responses),
                              "ground_truth": ["1"] * len(responses), "response_text": list(responses)})


MISBEHAVES = """
import asyncio, os, sys, time

def score(prompt, response, ground_truth):
    if response == "hang":
        while True:
            try:
                time.sleep(10)
            except:
                pass
    if response == "exit":
        sys.exit(3)
    if response == "crash":
        os._exit(3)
    if response == "cancel":
        raise asyncio.CancelledError()
    if response == "huge":
        return 10**400
    if response == "huge-metric":
        return {"score": 0.5, "size": 10**400, "length": 2}
    return 1.0

def batched(prompts, responses, ground_truths):
    return [10**400 if r == "huge" else 1.0 for r in responses]
"""


def test_on_error_zero_scores_every_kind_of_failure_zero_and_goes_on(tmp_path):
    (tmp_path / "rewards.py").write_text(MISBEHAVES)
    source = FunctionSource(str(tmp_path / "rewards.py"), "score", on_error="zero", timeout_s=1.0)
    started = time.monotonic()
    output = source.score(batch(["ok", "hang", "exit", "crash", "cancel", "huge", "huge-metric", "ok"]))
    assert time.monotonic() - started < 1.0 + 4
    assert output.scores.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0]
    assert output.metrics == {"errors": 5.0, "nonfinite": 1.0, "length": 2.0}  # the huge metric is left out
    assert source.process.starts == 3  # the hung worker and the crashed one were replaced
    source.close()


def test_a_batched_overflow_names_the_sample(tmp_path):
    (tmp_path / "rewards.py").write_text(MISBEHAVES)
    source = FunctionSource(str(tmp_path / "rewards.py"), "batched", batched=True)
    with pytest.raises(RewardFunctionError, match=r"batched reward function 'batched' .* returned 1000.*\.\.\. \(int of 401 digits\) "
                                                  r"for sample 1, too large for a float"):
        source.score(batch(["ok", "huge"]))
    source.close()
