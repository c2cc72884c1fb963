"""Every generate call of a run has a wall-clock limit (`rollout.timeout_s`, `rlhf.rollout.timed`):
past it the run stops with exit 1 and an error naming the engine and the key."""

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from rlhf.cli.main import main  # noqa: E402
from rlhf.data.batch import Batch  # noqa: E402
from rlhf.rollout.base import SamplingParams, StepPrompt  # noqa: E402
from rlhf.rollout.timed import GenerationTimeout, TimedRollout  # noqa: E402


class NeverReturns:
    model = "the engine's module"

    def generate(self, prompts, sampling):
        time.sleep(3600)

    def generate_steps(self, prompts, k, sampling, delimiter=None):
        time.sleep(3600)

    def sleep(self):
        return "asleep"


def test_a_hung_generate_call_raises_naming_the_engine_and_the_key():
    timed = TimedRollout(NeverReturns(), timeout_s=0.2)
    start = time.monotonic()
    with pytest.raises(GenerationTimeout, match=r"generating 3 responses .* with NeverReturns took longer than rollout.timeout_s=0.2 s"):
        timed.generate(Batch({}, {"prompt": ["a", "b", "c"]}), SamplingParams())
    assert time.monotonic() - start < 5
    with pytest.raises(GenerationTimeout, match=r"generating 4 next steps of 2 prefixes .* took longer than rollout.timeout_s=0.2 s"):
        timed.generate_steps([StepPrompt([1], []), StepPrompt([2], [3])], 4, SamplingParams())
    assert timed.sleep() == "asleep" and timed.model == "the engine's module"  # everything else passes through


def test_a_run_whose_generation_is_too_slow_stops_with_exit_1(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "quickstart", f"trainer.output_dir={out}", "sft.enabled=false", "trainer.total_steps=1",
                 "data.eval.size=4", "data.train_batch_size=2", "rollout.n=2", "actor.mini_batch_size=4", "actor.micro_batch_size=4",
                 "rollout.timeout_s=0.001"])
    err = capsys.readouterr().err
    assert code == 1 and "took longer than rollout.timeout_s=0.001 s" in err and "Traceback" not in err


def test_the_limit_must_be_positive(capsys):
    assert main(["train", "quickstart", "rollout.timeout_s=0"]) == 2
    assert "rollout.timeout_s: must be > 0 (seconds), got 0" in capsys.readouterr().err
