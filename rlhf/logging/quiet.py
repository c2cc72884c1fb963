"""A quiet console by default: the third-party chatter a run cannot act on is dropped, and
`rlhf --verbose` (the environment variable `RLHF_VERBOSE=1`, which worker processes inherit)
shows all of it again.

What goes, and why it is harmless:

- DeepSpeed's "Setting accelerator to CPU" (transformers imports DeepSpeed whenever it is
  installed; on a machine without GPUs the CPU accelerator is the right one), and the line it
  prints for each communication op it loads;
- numpy's "smallest subnormal ... is zero" UserWarnings (a run turns on flush-to-zero for
  speed, `torch.set_flush_denormal`, before pandas, imported under DeepSpeed and mlflow, first
  asks numpy for float limits);
- FutureWarnings and DeprecationWarnings raised inside third-party packages (one library
  calling another's deprecated API; such a warning about our or your own code still shows);
- progress bars of `datasets`, and of vLLM's checkpoint loading;
- vLLM's log lines below ERROR (`VLLM_LOGGING_LEVEL=ERROR` unless set otherwise): its
  configuration report, a warm-up traceback (our engine hands vLLM token ids and keeps no
  tokenizer there, on purpose), "Failed to load weights" on every weight sync (rotary
  embeddings and a tied LM head have no weights of their own to reload), performance hints of
  the CPU build. What goes wrong in vLLM raises, and the engine reports it; weights that did
  not arrive are caught by the probe check (`sync.check_every`).

Everything else passes: our own messages (dropped prompts, `trust_remote_code`, a tokenizer
without pad token, ...), other libraries' warnings and every error.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator

VERBOSE_ENV = "RLHF_VERBOSE"
"""Set to 1 by `rlhf --verbose`; worker processes that inherit it are verbose too."""

THIRD_PARTY = r"(accelerate|datasets|deepspeed|huggingface_hub|mlflow|numpy|pandas|peft|ray|tensorboard|torch|transformers|vllm|wandb)(\.|$)"
"""Modules whose deprecation warnings are not the user's to act on."""


def verbose() -> bool:
    """Whether this process shows everything (`RLHF_VERBOSE` set and not 0)."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def set_verbose() -> None:
    """Make this process and the processes it starts verbose."""
    os.environ[VERBOSE_ENV] = "1"


class DropMessages(logging.Filter):
    """Drops the log records whose message starts with one of `prefixes`, unless verbose
    (checked per record: a filter installed early still obeys a later --verbose)."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose():
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep the record
            return True
        return not message.startswith(self.prefixes)


class BelowError(logging.Filter):
    """Drops the records below ERROR of the loggers of package `package`, unless verbose."""

    def __init__(self, package: str):
        super().__init__()
        self.package = package

    def filter(self, record: logging.LogRecord) -> bool:
        chatter = record.name.split(".")[0] == self.package and record.levelno < logging.ERROR
        return verbose() or not chatter


DEEPSPEED_FILTER = DropMessages(("Setting accelerator to CPU",))
VLLM_FILTER = BelowError("vllm")


def quiet_libraries() -> None:
    """Install the filters of this module's docstring in this process (repeatable; nothing
    when verbose). Call it before the libraries are imported: some speak at import time."""
    if verbose():
        return
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal", category=UserWarning)
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category, module=THIRD_PARTY)
    logging.getLogger("DeepSpeed").addFilter(DEEPSPEED_FILTER)  # it has its own handler (addFilter: once)
    if logging.lastResort is not None:  # where vLLM's records go before it configured its handler
        logging.lastResort.addFilter(VLLM_FILTER)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "datasets" in sys.modules:  # the environment variable is read at import
        sys.modules["datasets"].disable_progress_bars()
    # read whenever vLLM configures its logging; a Ray run's workers get it too (VLLM_* travels)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


@contextlib.contextmanager
def held_stdout() -> Iterator[None]:
    """Keep what Python code prints to stdout inside the block (DeepSpeed prints a line for
    each op it loads), unless verbose; should the block fail, it is printed after all, to
    stderr, as the context of the error."""
    if verbose():
        yield
        return
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise
