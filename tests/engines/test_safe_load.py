"""Checkpoints load as data, never as code (`rlhf.engines.safe_load`): DeepSpeed checkpoints of
every ZeRO stage still resume and export with weights-only loading forced, and a checkpoint
file whose pickle would run a command is refused by every loader we use."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from rlhf.engines.base import OptimConfig
from rlhf.engines.safe_load import FORCE, weights_only_loads

OPTIM = OptimConfig(lr=1e-2)


class RunsACommand:
    """A pickle payload: unpickling it would call os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pt"
    torch.save({"module": RunsACommand(marker)}, path)
    with pytest.raises(pickle.UnpicklingError, match="system"):
        torch.load(path, weights_only=True)
    with weights_only_loads(), pytest.raises(pickle.UnpicklingError, match="system"):
        torch.load(path, weights_only=False)  # as DeepSpeed's readers call it: forced to weights-only
    assert not marker.exists()
    assert FORCE not in os.environ  # restored after the block


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
def test_deepspeed_checkpoints_resume_and_merge_with_weights_only_loading(tmp_path, zero_stage):
    pytest.importorskip("deepspeed", reason="DeepSpeed is not installed")
    from rlhf.controller.export import deepspeed_state_dict
    from rlhf.engines.deepspeed_engine import DeepSpeedEngine

    engine = DeepSpeedEngine(tiny(), OPTIM, zero_stage=zero_stage)
    engine.backward(engine.module(torch.ones(3, 4)).pow(2).sum())
    engine.step()
    engine.save_checkpoint(tmp_path / "actor")
    saved = {name: tensor.clone() for name, tensor in engine.named_weights()}
    restored = DeepSpeedEngine(tiny(), OPTIM, zero_stage=zero_stage)
    restored.load_checkpoint(tmp_path / "actor")
    for name, tensor in restored.named_weights():
        assert torch.equal(tensor, saved[name]), name
    merged = deepspeed_state_dict(tmp_path / "actor")
    for name, tensor in saved.items():
        assert torch.equal(merged[name].float(), tensor), name
