"""Ctrl-C: the first one is acknowledged at once ("stopping after this step (Ctrl-C again to
stop now)"), not when the step ends; during the SFT warm start it saves SFT's progress, and the
next launch continues from it exactly. SFT prints progress lines on the console."""

import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

import rlhf.controller.sft as sft_module
from rlhf.cli.main import main
from rlhf.controller.interrupt import stop_on_signals
from rlhf.logging.console import SFTProgress
from rlhf.logging.jsonl import read_jsonl

SLOW_REWARD = """
import time


def slow_zero(prompts, responses, ground_truths):
    time.sleep(2.0)  # every RL step (and evaluation) takes at least 2 s
    return [0.0] * len(prompts)
"""


def lines_of(process: subprocess.Popen) -> "queue.Queue[tuple[float, str | None]]":
    """(arrival time, line) of the process's output as it arrives; (time, None) at its end."""
    arrived: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            arrived.put((time.monotonic(), line.rstrip("\n")))
        arrived.put((time.monotonic(), None))

    threading.Thread(target=read, daemon=True).start()
    return arrived


@pytest.mark.slow
def test_the_first_ctrl_c_is_acknowledged_before_the_step_ends(tmp_path: Path):
    reward = tmp_path / "slow.py"
    reward.write_text(SLOW_REWARD)
    command = [
        sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}",
        "sft.enabled=false", "data.eval.size=16", "data.train_batch_size=4", "rollout.n=2", "actor.mini_batch_size=8",
        "actor.micro_batch_size=8", "trainer.total_steps=1000", "trainer.log_every=1",
        f"reward.sources=[{{type: function, path: {reward}, name: slow_zero, batched: true}}]",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE"):  # left by in-process DeepSpeed tests
        env.pop(name, None)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    arrived, seen, signalled = lines_of(process), [], None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            when, line = arrived.get(timeout=deadline - time.monotonic())
            if line is None:
                break
            seen.append((when, line))
            if line.startswith("step 1 |") and signalled is None:
                # the line is logged at the end of step 1; a second later step 2 is under way,
                # and it takes 2 s or more
                time.sleep(1.0)
                process.send_signal(signal.SIGINT)
                signalled = time.monotonic()
        assert process.wait(timeout=60) == 130, "\n".join(line for _, line in seen)
    finally:
        process.kill()
    output = [line for _, line in seen]
    acknowledged = next(i for i, line in enumerate(output) if "stopping after this step (Ctrl-C again to stop now)" in line)
    step_2 = next(i for i, line in enumerate(output) if line.startswith("step 2 |"))
    assert signalled is not None and acknowledged < step_2, "\n".join(output)
    assert any("stopped by signal 2 after step 2" in line for line in output)


def test_a_second_ctrl_c_stops_at_once_and_the_message_comes_once(capfd):
    with stop_on_signals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs between two bytecodes of this thread
        assert stop.signal == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert capfd.readouterr().err.count("SIGINT: stopping after this step (Ctrl-C again to stop now)") == 1


SFT_ARGS = ["data.eval.size=16", "sft.max_steps=12", "sft.eval_every=4", "sft.stop_at_accuracy=1.0", "sft.batch_size=16", "sft.val_size=16"]
"""SFT of 12 steps, a validation every 4 (the target is never reached)."""


def ctrl_c_at_sft_step(monkeypatch, step: int) -> None:
    """A SIGINT (as Ctrl-C sends it) during SFT step `step` (counted from 1)."""
    real_step, calls = sft_module.sft_step, []

    def interrupted(engine, batch):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(engine, batch)

    monkeypatch.setattr(sft_module, "sft_step", interrupted)


def test_ctrl_c_during_sft_keeps_its_progress_and_the_next_launch_continues_exactly(tmp_path: Path, monkeypatch, capfd):
    straight = tmp_path / "straight"
    assert main(["sft", "quickstart", f"trainer.output_dir={straight}", *SFT_ARGS]) == 0
    assert "SFT step 0/12 | val_acc" in capfd.readouterr().out  # the progress line of the first validation

    out = tmp_path / "run"
    ctrl_c_at_sft_step(monkeypatch, 6)
    assert main(["sft", "quickstart", f"trainer.output_dir={out}", *SFT_ARGS]) == 130
    err = capfd.readouterr().err
    assert "SIGINT: stopping after this SFT step, saving its progress (Ctrl-C again to stop now)" in err
    assert f"stopped by signal 2 after SFT step 6; its progress is in {out / 'sft_checkpoint'}" in err
    assert (out / "sft_checkpoint" / "state.pt").exists() and not (out / "sft_model").exists()

    monkeypatch.undo()
    assert main(["sft", "quickstart", f"trainer.output_dir={out}", *SFT_ARGS]) == 0
    assert f"SFT: continuing after step 6 from {out / 'sft_checkpoint'}" in capfd.readouterr().out
    assert not (out / "sft_checkpoint").exists() and (out / "sft_model" / "config.json").exists()
    assert read_jsonl(out / "sft_metrics.jsonl") == read_jsonl(straight / "sft_metrics.jsonl")


def test_sft_progress_lines_come_every_few_seconds_and_at_the_first_validation():
    text = io.StringIO()
    progress = SFTProgress(max_steps=100, target=0.3, every_s=3600, console=Console(file=text, width=200))
    progress.log({"sft/step": 0, "sft/val_accuracy": 0.0})
    progress.log({"sft/step": 1, "sft/loss": 2.5, "sft/grad_norm": 1.0})
    progress.log({"sft/step": 10, "sft/val_accuracy": 0.1})  # within the hour: no line
    assert text.getvalue().splitlines() == ["SFT step 0/100 | val_acc 0.000 (target 0.3) | 0 s"]
    progress.every_s = 0.0
    progress.log({"sft/step": 20, "sft/val_accuracy": 0.2})
    assert text.getvalue().splitlines()[-1] == "SFT step 20/100 | loss 2.5 | val_acc 0.200 (target 0.3) | 0 s"
