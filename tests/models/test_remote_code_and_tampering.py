"""Security of loading: a checkpoint's own Python code runs
only when the recipe turns `trust_remote_code` on, and then a warning names the model; a run
directory whose checkpoint was tampered with to run a command refuses to resume, and the
command never runs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.cli.main import main  # noqa: E402
from rlhf.config.errors import ConfigError  # noqa: E402
from rlhf.models.load import load_causal_lm  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402

CUSTOM_CODE = '''
from pathlib import Path
from transformers import LlamaConfig, LlamaForCausalLM

Path({marker!r}).write_text("this code ran")


class ShippedConfig(LlamaConfig):
    model_type = "shipped_llama"


class ShippedLM(LlamaForCausalLM):
    config_class = ShippedConfig
'''


def model_with_shipped_code(root: Path, marker: Path) -> Path:
    """The tiny model, declared as needing its own modelling code (which leaves `marker`)."""
    path = build_tiny_model(root / "model")
    (path / "shipped_modeling.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((path / "config.json").read_text())
    config.update(model_type="shipped_llama", architectures=["ShippedLM"],
                  auto_map={"AutoConfig": "shipped_modeling.ShippedConfig", "AutoModelForCausalLM": "shipped_modeling.ShippedLM"})
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_shipped_code_runs_only_when_trusted_and_then_with_a_warning(tmp_path, caplog):
    marker = tmp_path / "ran"
    path = model_with_shipped_code(tmp_path, marker)
    with pytest.raises(ConfigError, match="model.path: cannot load a causal LM"):
        load_causal_lm(str(path), torch.device("cpu"))
    assert not marker.exists()
    with caplog.at_level(logging.WARNING, logger="rlhf.models.load"):
        model = load_causal_lm(str(path), torch.device("cpu"), trust_remote_code=True)
    assert type(model).__name__ == "ShippedLM" and marker.read_text() == "this code ran"
    assert f"model.trust_remote_code is on: Python code shipped with {path} will run" in caplog.text


class RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, capsys):
    out, marker = tmp_path / "run", tmp_path / "pwned"
    run = ["train", "quickstart", f"trainer.output_dir={out}", "sft.enabled=false", "trainer.total_steps=1",
           "data.eval.size=4", "data.train_batch_size=2", "rollout.n=2", "actor.mini_batch_size=4", "actor.micro_batch_size=4"]
    assert main(run) == 0
    loop_file = out / "checkpoints" / "step_000001" / "loop.pt"
    state = torch.load(loop_file, weights_only=True)
    torch.save({**state, "step": RunsACommand(marker)}, loop_file)
    metrics = (out / "metrics.jsonl").read_bytes()
    assert main([*run, "trainer.total_steps=2"]) == 1
    err = capsys.readouterr().err
    assert f"checkpoint {loop_file.parent} cannot be restored" in err and "Traceback" not in err
    assert not marker.exists()
    assert (out / "metrics.jsonl").read_bytes() == metrics  # nothing written over
