"""Checkpoint files load as data, never as code.

A pickle can name any callable and have it run on load; `torch.load(weights_only=True)`
refuses every global but tensors, plain containers and an allow-list. Our own loads pass it.
DeepSpeed's checkpoint readers (resume and the ZeRO shard merge of `rlhf export`) call
`torch.load(weights_only=False)` themselves, so around them :func:`weights_only_loads` forces
weights-only loading for every `torch.load` (PyTorch's `TORCH_FORCE_WEIGHTS_ONLY_LOAD`) and
allows just the three plain-data classes DeepSpeed pickles into its optimizer shards. A
tampered checkpoint then fails to load, naming the refused global, instead of running code.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from typing import Iterator

import torch

DEEPSPEED_GLOBALS = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)
"""Classes (attribute holders and an enum) inside DeepSpeed's ZeRO optimizer-state files."""
FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def weights_only_loads() -> Iterator[None]:
    """Every `torch.load` in the block loads weights only, DeepSpeed's classes allowed."""
    allowed = []
    for dotted in DEEPSPEED_GLOBALS:
        module, name = dotted.rsplit(".", 1)
        with contextlib.suppress(ImportError, AttributeError):  # an older or newer DeepSpeed
            allowed.append(getattr(importlib.import_module(module), name))
    previous = os.environ.get(FORCE)
    os.environ[FORCE] = "1"
    try:
        with torch.serialization.safe_globals(allowed):
            yield
    finally:
        if previous is None:
            os.environ.pop(FORCE, None)
        else:
            os.environ[FORCE] = previous
