"""The run-level non-finite guard: a run whose updates keep failing stops, with evidence.

The engines skip any optimiser step whose loss or gradient norm is NaN or inf
(:mod:`rlhf.engines.guards`), and the workers count those steps (`actor/skipped_updates`,
`critic/skipped_updates`). One bad batch is survivable; a policy that has diverged is not.
After `trainer.max_nonfinite_steps` RL steps in a row with a skipped update, the run stops
with an error naming the step, and that step's batch is saved for debugging. Checkpoints
written before stay valid: the failing step writes none.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf.data.batch import Batch

SKIP_METRICS = ("actor/skipped_updates", "critic/skipped_updates")


class NonFiniteUpdatesError(RuntimeError):
    """Too many RL steps in a row skipped an update for a non-finite loss or gradient."""


class NonFiniteGuard:
    """Counts RL steps in a row with a skipped update; raises at `limit` (0: never)."""

    def __init__(self, limit: int, debug_dir: Path, streak: int = 0):
        self.limit, self.debug_dir, self.streak = limit, Path(debug_dir), streak

    def state_dict(self) -> dict:
        """The streak of steps with a skipped update, which a resumed run continues."""
        return {"streak": self.streak}

    def load_state_dict(self, state: dict) -> None:
        self.streak = int(state["streak"])

    def check(self, step: int, metrics: dict[str, float], batch: Batch | None) -> None:
        """Update the streak with step `step`'s metrics; at the limit save `batch` and raise."""
        skipped = {key.split("/")[0]: int(metrics.get(key, 0)) for key in SKIP_METRICS if metrics.get(key, 0)}
        if not skipped:
            self.streak = 0
            return
        self.streak += 1
        counts = ", ".join(f"{role}: {count}" for role, count in skipped.items())
        print(f"step {step}: skipped optimiser updates with a non-finite loss or gradient norm ({counts}); "
              f"{self.streak} step(s) in a row", flush=True)
        if self.limit and self.streak >= self.limit:
            saved = save_batch(batch, self.debug_dir / f"nonfinite_step_{step:06d}.pt") if batch is not None else None
            where = f"; its batch is saved in {saved} (torch.load(path, weights_only=True))" if saved else ""
            raise NonFiniteUpdatesError(
                f"step {step}: {self.streak} RL steps in a row skipped optimiser updates for a NaN/inf loss or gradient "
                f"norm ({counts} this step), so the run stopped (trainer.max_nonfinite_steps={self.limit}){where}. "
                "The weights were never updated with non-finite values; checkpoints already written are intact. "
                "Usual causes: a learning rate too high, NaN/inf rewards or advantages, or bf16 overflow.")


def save_batch(batch: Batch, path: Path) -> Path:
    """The batch's tensors and plain-data fields in one file loadable with weights_only=True."""
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {key: values for key, values in batch.non_tensors.items() if all(_is_plain(v) for v in values)}
    torch.save({"tensors": {key: t.detach().cpu() for key, t in batch.tensors.items()}, "fields": plain}, path)
    return path


def _is_plain(value) -> bool:
    """True for what `torch.load(weights_only=True)` reads back: None, str, int, float (bool
    is an int) and lists, tuples and str-keyed dicts of them."""
    if value is None or isinstance(value, (str, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False
