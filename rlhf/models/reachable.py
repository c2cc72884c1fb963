"""Can a model path be loaded here, without starting a blind download?

A run loads its models (policy, reference, critic, reward models) by path: a local directory
or a Hugging Face hub name. :func:`model_reachable` answers before anything is loaded, in
this order: a local directory with a `config.json`; a hub model whose config and weights are
in the Hugging Face cache; else, unless the hub is switched off (`HF_HUB_OFFLINE` /
`TRANSFORMERS_OFFLINE`), one metadata request to the hub with a short timeout.
:func:`rlhf.controller.preflight.unreachable_models` applies it to every model a recipe loads,
naming the recipe key (for `rlhf validate`, `rlhf doctor` and a run before it creates its
directory).
"""

from __future__ import annotations

import os
from pathlib import Path

HUB_TIMEOUT_S = 5.0
"""Longest wait for the hub's answer about one model."""

_TRUE = ("1", "ON", "YES", "TRUE")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
"""One of these next to `config.json` makes a cached model loadable (sharded or not)."""


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE or
    TRANSFORMERS_OFFLINE set to 1/on/yes/true, now or when huggingface_hub was imported)."""
    from huggingface_hub import constants

    from_env = any(os.environ.get(name, "").strip().upper() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return from_env or bool(constants.HF_HUB_OFFLINE)


def model_reachable(path: str, *, timeout_s: float = HUB_TIMEOUT_S, cache_dir: str | Path | None = None,
                    endpoint: str | None = None) -> tuple[bool, str]:
    """(whether the model at `path` can be loaded here, a one-line detail saying where it is
    or what to do). `cache_dir` and `endpoint` default to huggingface_hub's (HF_HUB_CACHE,
    HF_ENDPOINT); the hub is asked only when the model is neither local nor cached."""
    local = Path(path).expanduser()
    if local.is_dir():
        if (local / "config.json").is_file():
            return True, f"local directory {path}"
        return False, f"local directory {path!r} has no config.json: it is not a Hugging Face model directory"
    if local.exists():
        return False, f"{path!r} is a file; give the model's directory"
    if local.is_absolute() or path.startswith((".", "~")):
        return False, f"{path!r} does not exist (a local path; a hub model is named like 'org/name')"
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(path)
    except HFValidationError:
        return False, f"{path!r} is neither a local directory nor a hub model name ('org/name')"
    cached = _cached_files(path, cache_dir)
    if "config.json" in cached and cached & set(_WEIGHTS):
        return True, f"hub model {path}, in the Hugging Face cache"
    partly = f" (the cache holds only {', '.join(sorted(cached))})" if cached else ""
    if hub_offline():
        return False, (
            f"hub model {path!r} is not in the Hugging Face cache{partly} and HF_HUB_OFFLINE is set: download it where the hub "
            f"is reachable (`hf download {path}`), or set model paths to a local directory"
        )
    return _ask_hub(path, timeout_s, endpoint)


def _cached_files(repo_id: str, cache_dir: str | Path | None) -> set[str]:
    """Which of config.json and the weight files the cache holds for `repo_id` (main revision)."""
    from huggingface_hub import try_to_load_from_cache

    names = ("config.json", *_WEIGHTS)
    return {name for name in names if isinstance(try_to_load_from_cache(repo_id, name, cache_dir=cache_dir), str)}


def _ask_hub(repo_id: str, timeout_s: float, endpoint: str | None) -> tuple[bool, str]:
    """One HEAD request for the repository's config.json."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, RepositoryNotFoundError

    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json", endpoint=endpoint), timeout=timeout_s, endpoint=endpoint)
    except GatedRepoError:
        return False, f"hub model {repo_id!r} is gated: accept its terms on its hub page and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return False, f"hub model {repo_id!r} does not exist (or is private: log in with `hf auth login`)"
    except EntryNotFoundError:
        return False, f"hub repository {repo_id!r} has no config.json: it is not a Hugging Face model"
    except Exception as error:  # network errors of several libraries; what matters is the message
        reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        return False, (
            f"the hub could not be asked about {repo_id!r} ({reason}; limit {timeout_s:g} s); download the model where the hub "
            f"is reachable (`hf download {repo_id}`) or set model paths to a local directory"
        )
    return True, f"hub model {repo_id}, not cached yet: it will be downloaded"
