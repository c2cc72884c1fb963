"""Saving and restoring the model roles of one process (for checkpoints of an RL run).

A trained role (actor, critic) saves its engine's own checkpoint (weights, optimiser, LR
schedule; DeepSpeed writes its sharded format, every rank its part) plus the generator that
shuffles its mini-batches; the reference saves its weights, which the dynamic anchor moves;
every process saves its random-number state (the HF rollout engine samples from it) and the
vLLM engine's stream of per-row sampling seeds.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch


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


def save_models(models, directory: Path, tag: str = "local", *, writes_shared: bool = True) -> None:
    """Write the roles of `models` (a :class:`rlhf.controller.roles.Models`) under `directory`;
    `tag` names this process's own file (`<pool>_rank<r>` for a Ray worker); only the process
    that `writes_shared` (rank 0) writes the replicated reference weights."""
    for name in ("actor", "critic"):
        worker = getattr(models, name)
        if worker is not None:
            (directory / name).mkdir(parents=True, exist_ok=True)
            worker.engine.save_checkpoint(directory / name)
    state = {"rng": rng_state(), "generators": {}}
    for name in ("actor", "critic"):
        worker = getattr(models, name)
        if worker is not None:
            state["generators"][name] = worker.shuffle_generator.get_state()
    if hasattr(models.rollout, "seed_stream"):  # vLLM: every sampled row draws its seed from it
        state["rollout_seeds"] = models.rollout.seed_stream.getstate()
    if models.ref is not None and writes_shared:
        torch.save(models.ref.state_dict(), directory / "ref.pt")
    torch.save(state, directory / f"process_{tag}.pt")


def load_models(models, directory: Path, tag: str = "local") -> None:
    """Restore what :func:`save_models` wrote (same roles, same number of ranks)."""
    for name in ("actor", "critic"):
        worker = getattr(models, name)
        if worker is not None:
            worker.engine.load_checkpoint(directory / name)
    state = torch.load(directory / f"process_{tag}.pt", weights_only=True)
    for name, generator_state in state["generators"].items():
        getattr(models, name).shuffle_generator.set_state(generator_state)
    if models.ref is not None:
        models.ref.load_state_dict(torch.load(directory / "ref.pt", map_location="cpu", weights_only=True))
    set_rng_state(state["rng"])
    if "rollout_seeds" in state and hasattr(models.rollout, "seed_stream"):
        models.rollout.seed_stream.setstate(state["rollout_seeds"])
