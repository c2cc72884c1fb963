"""Shared test settings: never reach a model hub (a lookup otherwise stalls for ~45 s)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny models are overhead-bound: one thread is as fast as two, and it cannot be slowed down
# 100x by OpenMP threads fighting another busy process for the same two cores.
import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_subnormal_floats():
    """A training run turns on flush-to-zero for speed (`seed_everything`); that is process-wide
    state, so undo it after each test (hypothesis refuses to draw floats without subnormals)."""
    yield
    torch.set_flush_denormal(False)
