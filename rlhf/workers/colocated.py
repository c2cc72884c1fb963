"""The roles that share one process (one device): the actor and its rollout engine, and the
reference, the critic and the reward models when the run places them there.

Colocation is HybridFlow's hybrid engine: training and generation alternate on the same
memory, and weights flow from trainer to rollout engine inside the process. This class holds
what concerns several roles at once: the weight sync, the dynamic anchor, checkpoints of the
process's state and shutting down. With the local backend the controller calls it directly;
each rank of a Ray worker group holds one, and its methods declare how a call reaches the
ranks (:mod:`rlhf.dispatch`).

Checkpoint contents (under a checkpoint directory): each trained role's engine checkpoint
(`actor/`, `critic/`: weights, optimiser, LR schedule; DeepSpeed writes its sharded format,
every rank its part), the reference weights (`ref.pt`, which the dynamic anchor moves; written
once, by the process that `writes_shared`), and `process_<tag>.pt` with this process's random
state (the HF rollout engine samples from it), the generators that shuffle mini-batches and
the vLLM engine's stream of per-row sampling seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch

from rlhf.dispatch import ALL, dispatch
from rlhf.models.lora import base_module
from rlhf.workers.state import rng_state, set_rng_state

TRAINED = ("actor", "critic")


@dataclass
class Colocated:
    """The roles of one process (each None when the run or this process has none)."""

    actor: Any = None
    rollout: Any = None
    ref: Any = None
    critic: Any = None
    reward_model: Any = None
    utterance_critic: Any = None
    """ArCHer's off-policy utterance critic (algorithm.advantage archer), beside the actor."""
    tag: str = "local"
    """Names this process's own checkpoint file (`<pool>_rank<r>` on a Ray worker)."""
    writes_shared: bool = True
    """This process writes what every rank holds alike (the reference weights): rank 0."""

    def role(self, name: str) -> Any:
        """The role called `name`, or this object itself for 'process'."""
        if name == "process":
            return self
        found = getattr(self, name, None) if name in ("actor", "rollout", "ref", "critic", "reward_model", "utterance_critic") else None
        if found is None:
            raise KeyError(f"this process hosts no {name!r} role")
        return found

    @dispatch(ALL, reduce="sum")
    def sync_weights(self) -> int:
        """Push the actor's weights into the rollout engine; returns the bytes copied (none when
        the engine generates with the actor's own module, LoRA layers included). Under ZeRO-3
        every rank of the group takes part in gathering each bucket."""
        if getattr(self.rollout, "model", None) is base_module(self.actor.engine.module):
            return 0
        return self.rollout.update_weights(self.actor.named_weights())

    @dispatch(ALL)
    def follow_policy(self, ema: float) -> None:
        """Move the reference towards the actor (T1's dynamic anchor)."""
        self.ref.follow(self.actor.named_weights(), ema=ema)

    @dispatch(ALL)
    def actor_weights(self) -> dict[str, torch.Tensor] | None:
        """The actor's full weights (gathered under ZeRO-3: every rank must call), on the
        process that `writes_shared`."""
        weights = {name: tensor.clone() for name, tensor in self.actor.named_weights()}
        return weights if self.writes_shared else None

    @dispatch(ALL)
    def save_state(self, directory: str | Path) -> None:
        """Write this process's part of a checkpoint into `directory` (see the module docstring)."""
        directory = Path(directory)
        state: dict[str, Any] = {"rng": rng_state(), "generators": {}}
        for name, worker in self._trained():
            (directory / name).mkdir(parents=True, exist_ok=True)
            worker.engine.save_checkpoint(directory / name)
            state["generators"][name] = worker.shuffle_generator.get_state()
        if hasattr(self.rollout, "seed_stream"):  # vLLM: every sampled row draws its seed from it
            state["rollout_seeds"] = self.rollout.seed_stream.getstate()
        if self.ref is not None and self.writes_shared:
            torch.save(self.ref.state_dict(), directory / "ref.pt")
        torch.save(state, directory / f"process_{self.tag}.pt")

    @dispatch(ALL)
    def load_state(self, directory: str | Path) -> None:
        """Restore what :meth:`save_state` wrote (same roles, same number of ranks)."""
        directory = Path(directory)
        for name, worker in self._trained():
            worker.engine.load_checkpoint(directory / name)
        state = torch.load(directory / f"process_{self.tag}.pt", weights_only=True)
        for name, generator_state in state["generators"].items():
            getattr(self, name).shuffle_generator.set_state(generator_state)
        if self.ref is not None:
            self.ref.load_state_dict(torch.load(directory / "ref.pt", map_location="cpu", weights_only=True))
        set_rng_state(state["rng"])
        if "rollout_seeds" in state and hasattr(self.rollout, "seed_stream"):
            self.rollout.seed_stream.setstate(state["rollout_seeds"])

    def checkpoint_parts(self) -> list[str]:
        """The file of this process that every complete checkpoint holds."""
        return [f"process_{self.tag}.pt"]

    @dispatch(ALL)
    def close(self) -> None:
        """Release what the roles hold outside Python's reach (a vLLM engine)."""
        close = getattr(self.rollout, "close", None)
        if callable(close):
            close()

    def _trained(self) -> Iterable[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in TRAINED if getattr(self, name) is not None]
