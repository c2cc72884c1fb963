"""Random-number state of a process: what a checkpoint keeps so that sampling and shuffling
continue exactly where they stopped."""

from __future__ import annotations

import random

import torch


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's generators (a process's sampling and initialisation)."""
    random.seed(seed)
    torch.manual_seed(seed)
    # Subnormal floats are slow on CPUs and carry no useful signal in training.
    torch.set_flush_denormal(True)


def rng_state() -> dict:
    """Python's and torch's (CPU and CUDA) random-number states."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
