"""`timeout_s` of function reward sources: a call that never returns fails its sample(s) with a
message naming the function and the limit, from the main thread and from any other (the
worker process is killed either way). `rlhf.deadline.call_with_timeout` (rollout and reward
model timeouts): a SIGALRM someone else set is left alone."""

from __future__ import annotations

import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.data.batch import Batch
from rlhf.deadline import CallTimedOut, call_with_timeout
from rlhf.rewards.function import FunctionSource, RewardFunctionError

HANGS = """
import time

def score(prompt, response, ground_truth):
    if response == "hang":
        time.sleep(3600)
    return 1.0

def batch_score(prompts, responses, ground_truths):
    while True:  # busy, never sleeps: stopped between two bytecodes
        pass

def stubborn(prompt, response, ground_truth):
    try:
        time.sleep(3600)
    except BaseException:  # swallows the timeout, then returns as if nothing happened
        return 1.0
"""


def write(tmp_path: Path) -> Path:
    path = tmp_path / "hanging_rewards.py"
    path.write_text(textwrap.dedent(HANGS), encoding="utf-8")
    return path


def batch(responses) -> Batch:
    return Batch(non_tensors={"prompt": ["q"] * len(responses), "prompt_text": ["q"] * len(responses),
                              "ground_truth": ["1"] * len(responses), "response_text": list(responses)})


def test_a_per_sample_call_that_never_returns_names_the_function_sample_and_limit(tmp_path):
    path = write(tmp_path)
    started = time.monotonic()
    with pytest.raises(RewardFunctionError) as info:
        FunctionSource(str(path), "score", timeout_s=0.2).score(batch(["ok", "hang", "ok"]))
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"reward function 'score' ({path}) did not return within its timeout_s of 0.2 s on sample 1" in message
    assert "was stopped (its worker process killed" in message and "\n" not in message
    assert signal.getsignal(signal.SIGALRM) is signal.SIG_DFL and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_batched_call_that_never_returns_fails_the_batch(tmp_path):
    path = write(tmp_path)
    with pytest.raises(RewardFunctionError, match=r"batched reward function 'batch_score' .* did not return within its "
                                                  r"timeout_s of 0.2 s on a batch of 2 samples"):
        FunctionSource(str(path), "batch_score", batched=True, timeout_s=0.2).score(batch(["a", "b"]))


def test_off_the_main_thread_the_call_is_stopped_too(tmp_path):
    path = write(tmp_path)
    source = FunctionSource(str(path), "score", timeout_s=0.2)
    caught: list[BaseException] = []

    def score_in_worker() -> None:
        try:
            source.score(batch(["hang"]))
        except BaseException as error:
            caught.append(error)

    worker = threading.Thread(target=score_in_worker)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], RewardFunctionError)
    assert "did not return within its timeout_s of 0.2 s on sample 0" in str(caught[0])
    # the call ran in a worker process, which was killed: nothing sleeps on in this process
    assert not any(thread.name == "call-with-timeout" for thread in threading.enumerate())
    assert source.process.pid is None
    assert source.score(batch(["ok"])).scores.tolist() == [1.0]  # a fresh worker takes the next call
    assert source.process.starts == 2
    source.close()


def test_a_call_that_swallows_the_timeout_still_fails(tmp_path):
    with pytest.raises(RewardFunctionError, match="did not return within its timeout_s of 0.1 s on sample 0"):
        FunctionSource(str(write(tmp_path)), "stubborn", timeout_s=0.1).score(batch(["x"]))


def test_on_error_zero_scores_timeouts_zero_and_counts_them(tmp_path):
    output = FunctionSource(str(write(tmp_path)), "score", timeout_s=0.1, on_error="zero").score(batch(["ok", "hang"]))
    assert output.scores.tolist() == [1.0, 0.0]
    assert output.metrics["errors"] == 1.0


def test_someone_elses_alarm_is_left_alone():
    def theirs(signum, frame) -> None:
        pass

    previous = signal.signal(signal.SIGALRM, theirs)
    try:
        signal.setitimer(signal.ITIMER_REAL, 30.0)
        assert call_with_timeout(lambda: 7, 5.0) == 7  # through a thread: the timer is not ours
        with pytest.raises(CallTimedOut):
            call_with_timeout(lambda: time.sleep(1.0), 0.05)
        assert signal.getsignal(signal.SIGALRM) is theirs and 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 30.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("in_thread", [False, True], ids=["main-thread", "other-thread"])
def test_results_and_exceptions_pass_through(in_thread):
    outcome: dict[str, object] = {}

    def check() -> None:
        outcome["value"] = call_with_timeout(lambda: "done", 1.0)
        with pytest.raises(KeyError, match="missing"):
            call_with_timeout(lambda: {}["missing"], 1.0)
        outcome["ok"] = True

    if in_thread:
        worker = threading.Thread(target=check)
        worker.start()
        worker.join(10)
    else:
        check()
    assert outcome == {"value": "done", "ok": True}


@pytest.mark.parametrize(("override", "message"), [
    ("reward.sources=[{type: function, path: r.py, name: score, timeout_s: 0}]", "reward.sources.0.timeout_s: must be > 0"),
    ("reward.sources=[{type: function, path: r.py, name: score, timeout_s: -1.5}]", "reward.sources.0.timeout_s: must be > 0"),
    ("reward.sources=[{type: function, path: r.py, name: score, timeout_s: soon}]", "reward.sources.0.timeout_s: expected a float"),
    ("reward.sources=[{type: arithmetic, timeout_s: 5}]", "reward.sources.0.timeout_s: only 'function' sources take timeout_s"),
])
def test_timeout_key_is_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_recipe(None, ["model.path=org/m", override])


def test_timeout_key_reaches_the_source(tmp_path):
    from rlhf.rewards.combine import build_source

    path = write(tmp_path)
    cfg = load_recipe(None, ["model.path=org/m", f"reward.sources=[{{type: function, path: {path}, name: score, timeout_s: 2.5}}]"])
    assert build_source(cfg.reward, 0).source.timeout_s == 2.5
    assert load_recipe(None, ["model.path=org/m"]).reward.sources[0].timeout_s == 60.0
