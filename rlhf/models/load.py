"""Load the policy (or build the tiny one) as a Hugging Face causal LM and its tokenizer."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import ModelConfig
from rlhf.logging.quiet import quiet_libraries

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
_WARNED_REMOTE_CODE: set[str] = set()


def autocast_dtype(model: ModelConfig) -> torch.dtype | None:
    """The reduced compute dtype of `model.dtype` (training and generation autocast to it), or
    None for float32."""
    dtype = DTYPES[model.dtype]
    return None if dtype == torch.float32 else dtype


def param_dtype(model: ModelConfig) -> torch.dtype:
    """The dtype `model.param_dtype` holds the policy's weights in (float32 or bfloat16)."""
    return DTYPES[model.param_dtype]


def cast_parameters(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Hold `module`'s floating-point parameters in `dtype`, in place (the Parameter objects,
    and so tied weights and whoever holds the module, stay the same); returns `module`.

    Buffers keep their dtype, as `from_pretrained(dtype=...)` leaves them: rotary frequencies
    rounded to bfloat16 would shift every position's angle."""
    for param in module.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return module


def warn_remote_code(path: str, key: str = "model.trust_remote_code") -> None:
    """Say, once per checkpoint, that `path` may run its own Python code (the recipe turned
    `key` on; every loader keeps it off otherwise)."""
    if path not in _WARNED_REMOTE_CODE:
        _WARNED_REMOTE_CODE.add(path)
        log.warning("%s is on: Python code shipped with %s will run in this process; turn it on only for models you trust", key, path)


def resolve_model_path(model: ModelConfig, output_dir: Path, seed: int) -> str:
    """The directory or hub name to load: `model.path` for a pretrained model; for
    `model.source: tiny`, the tiny model built (once) in `<output_dir>/init_model`, or the one
    built earlier that `model.path` names (see :func:`check_tiny_model_path`)."""
    if model.source == "pretrained":
        return model.path
    if model.path:
        check_tiny_model_path(model)
        return model.path
    from rlhf.models.tiny import build_tiny_model

    quiet_transformers()
    tiny = model.tiny
    target = output_dir / "init_model"
    if not (target / "config.json").exists():
        # a new directory is built aside and renamed into place: a launch killed mid-build must
        # not leave a config.json without weights, which every later launch would try to load
        building = target if target.exists() else target.with_name(f".tmp-{target.name}")
        build_tiny_model(
            building, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers, num_heads=tiny.num_heads,
            intermediate_size=tiny.intermediate_size, max_position_embeddings=tiny.max_position_embeddings, seed=seed,
        )
        if building != target:
            os.replace(building, target)
    return str(target)


def check_tiny_model_path(model: ModelConfig) -> None:
    """A ConfigError unless `model.path` (with `model.source: tiny`) holds the tiny model of
    `model.tiny`'s sizes, built earlier (e.g. a run's `init_model/`).

    Nothing is ever built at `model.path`: someone who names a directory or hub model there
    means to train that model, and a random tiny one trained in its place (or written into
    their model's directory) would be a silent, costly mistake."""
    from rlhf.models.tiny import tiny_model_mismatch

    tiny = model.tiny
    path = Path(model.path).expanduser()
    reason = tiny_model_mismatch(
        path, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers, num_heads=tiny.num_heads,
        intermediate_size=tiny.intermediate_size, max_position_embeddings=tiny.max_position_embeddings,
    )
    if reason is None:
        return
    what = "is not a local directory" if not path.exists() else f"does not hold this recipe's tiny model ({reason})"
    raise ConfigError(
        f"model.path: {model.path!r} {what}; model.source=tiny trains a random tiny model and builds nothing at model.path. "
        f"To train the model you meant, set model.source=pretrained (model.path names its directory or hub name); "
        f"to train the tiny model, set model.path='' (it is built in the run directory)"
    )


def quiet_transformers() -> None:
    """No per-file progress bars when loading and saving small local checkpoints, and the
    library noise of :mod:`rlhf.logging.quiet` filtered (also in a worker process, which
    loads its model through here before anything imports DeepSpeed or vLLM)."""
    quiet_libraries()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def check_local_path(path: str) -> None:
    """A ConfigError naming model.path when `path` is written as a local path (absolute, or
    starting with '.' or '~') that does not exist: it is then no hub name either."""
    if (Path(path).is_absolute() or path.startswith((".", "~"))) and not Path(path).expanduser().exists():
        raise ConfigError(f"model.path: {path!r} does not exist (a local path; a hub model is named like 'org/name')")


def _one_line(error: Exception) -> str:
    """An error's message on one line (transformers' messages span several)."""
    return " ".join(str(error).split())


def load_tokenizer(path: str, trust_remote_code: bool = False):
    """The tokenizer at `path`, with a pad token (EOS when it defines none)."""
    quiet_transformers()
    from transformers import AutoTokenizer

    if trust_remote_code:
        warn_remote_code(path)
    check_local_path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.path: cannot load a tokenizer from {path!r}: {_one_line(error)}") from None
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ConfigError(f"model.path: the tokenizer of {path!r} has neither a pad nor an EOS token")
        log.warning("tokenizer of %s has no pad token; using its EOS token %r for padding", path, tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, device: torch.device, trust_remote_code: bool = False) -> torch.nn.Module:
    """A float32 causal LM on `device` (mixed precision is applied by autocast)."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    quiet_transformers()
    if trust_remote_code:
        warn_remote_code(path)
    check_local_path(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError) as error:  # missing or corrupt files, an unknown architecture
        raise ConfigError(f"model.path: cannot load a causal LM from {path!r}: {type(error).__name__}: {_one_line(error)}") from None
    return model.to(device)
