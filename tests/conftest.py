"""Shared test settings: never reach a model hub (a lookup otherwise stalls for ~45 s), and
Ctrl-C works as in a terminal."""

import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Tiny models are overhead-bound: one thread is as fast as two, and it cannot be slowed down
# 100x by OpenMP threads fighting another busy process for the same two cores.
import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402

# A shell starts background jobs (`make test &` in a script, nohup) with SIGINT ignored, and
# Python then keeps it ignored: the tests that press Ctrl-C on a run would wait forever. Catch
# it as a terminal session does; runs started from here get the default handling back on exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _restore_subnormal_floats():
    """A training run turns on flush-to-zero for speed (`seed_everything`); that is process-wide
    state, so undo it after each test (hypothesis refuses to draw floats without subnormals)."""
    yield
    torch.set_flush_denormal(False)
