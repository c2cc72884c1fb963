"""Launcher variables left in the environment (WORLD_SIZE=2, MASTER_PORT=notaport, ...): a
DeepSpeed run stops at once with exit 2 naming the variable, instead of waiting for peers that
never come or dying with "invalid literal for int()"."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.config.errors import ConfigError
from rlhf.engines.launcher_env import check_launcher_env

ROOT = Path(__file__).resolve().parents[2]
ONE_STEP = ["sft.enabled=false", "trainer.total_steps=1", "data.train_batch_size=2", "rollout.n=2", "actor.mini_batch_size=4",
            "actor.micro_batch_size=4", "data.eval.path=", "sync.check_every=0", "train.engine=deepspeed", "train.zero_stage=0"]


@pytest.fixture
def clean_env(monkeypatch):
    """No launcher variables, as in a fresh shell."""
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "CROSS_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(("variables", "expected"), [
    ({"MASTER_PORT": "notaport"}, "MASTER_PORT='notaport' is not a TCP port (an integer 1 to 65535)"),
    ({"MASTER_PORT": "70000"}, "MASTER_PORT='70000' is not a TCP port"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a number of processes (an integer >= 1)"),
    ({"WORLD_SIZE": "0"}, "WORLD_SIZE='0' is not a number of processes"),
    ({"RANK": "-1"}, "RANK='-1' is not a rank (an integer >= 0)"),
    ({"RANK": "1"}, "RANK=1 is out of range for WORLD_SIZE=1 (ranks are 0 to 0)"),
    ({"LOCAL_RANK": ""}, "LOCAL_RANK='' is not a rank on this node"),
    ({"MASTER_ADDR": "no such host"}, "MASTER_ADDR='no such host' is not a host name or address this machine can resolve"),
    ({"MASTER_ADDR": "host.invalid"}, "MASTER_ADDR='host.invalid' is not a host name"),
    ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set, but no launcher started this process"),
])
def test_a_bad_variable_is_named_with_what_to_do(clean_env, variables, expected):
    for name, value in variables.items():
        clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        check_launcher_env(launched=False)
    message = str(error.value)
    assert message.startswith(f"environment variable {expected}")
    assert "unset it (with the other launcher variables RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT" in message


def test_good_values_pass(clean_env):
    check_launcher_env()  # nothing set: a world of one
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost", "MASTER_PORT": "29500"}.items():
        clean_env.setenv(name, value)
    check_launcher_env(launched=False)
    # a launcher's world of two: rank 1 has a peer to wait for
    clean_env.setenv("WORLD_SIZE", "2")
    clean_env.setenv("RANK", "1")
    clean_env.setenv("TORCHELASTIC_RUN_ID", "job-1")
    check_launcher_env()
    # the same values without the launcher's own variable: nobody will start rank 0
    with pytest.raises(ConfigError, match="WORLD_SIZE=2 is set, but no launcher started this process"):
        check_launcher_env({"WORLD_SIZE": "2", "RANK": "1"})


def test_a_deepspeed_run_with_a_bad_master_port_exits_2_at_once(tmp_path, clean_env):
    env = {**os.environ, "MASTER_PORT": "notaport", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rlhf.cli.main", "train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *ONE_STEP],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    seconds = time.monotonic() - start
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: environment variable MASTER_PORT='notaport' is not a TCP port" in done.stderr
    assert "Traceback" not in done.stderr and "invalid literal" not in done.stderr
    assert seconds < 120  # imports and the tiny model; it used to fail later, or wait 30 minutes for WORLD_SIZE


def test_a_deepspeed_run_with_a_stale_world_size_exits_2(tmp_path, clean_env, capsys):
    from rlhf.cli.main import main

    clean_env.setenv("WORLD_SIZE", "2")
    assert main(["train", "quickstart", f"trainer.output_dir={tmp_path / 'run'}", *ONE_STEP]) == 2
    err = capsys.readouterr().err
    assert "environment variable WORLD_SIZE=2 is set, but no launcher started this process" in err
    assert "distributed.backend=ray" in err and "Traceback" not in err
