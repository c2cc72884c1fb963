"""`VerifierSource`: a reward source that runs a rule verifier in a `VerifierPool`."""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.data.batch import Batch
from rlhf.rewards.base import RewardOutput
from rlhf.rewards.verifier_pool import VerifierPool


class VerifierSource:
    """Scores `fn(response_text, ground_truth)` per sample under a per-sample timeout.

    `fn` must be a top-level function (workers import it by name). Metrics: `accuracy` (share of samples scoring 1.0), `timeouts` (samples killed at the
    timeout, scored 0.0) and `errors` (samples whose verifier raised or crashed, scored 0.0).
    """

    def __init__(self, fn: Callable[[str, str], float], timeout_s: float, num_workers: int, warmup: Callable[[], object] | None = None):
        self.fn = fn
        self.pool = VerifierPool(num_workers=num_workers, timeout_s=timeout_s, warmup=warmup)
        if num_workers > 0:
            self.pool.start()  # workers warm up while the models load

    def score(self, batch: Batch) -> RewardOutput:
        responses = [str(r) for r in batch["response_text"]]
        ground_truths = ["" if g is None else str(g) for g in batch["ground_truth"]]
        values, timeouts = self.pool.score_all(self.fn, responses, ground_truths)
        scores = torch.tensor(values, dtype=torch.float32)
        accuracy = (scores == 1.0).float().mean().item() if len(values) else 0.0
        metrics = {"accuracy": accuracy, "timeouts": float(timeouts), "errors": float(self.pool.last_errors)}
        return RewardOutput(scores, metrics)

    def close(self) -> None:
        """Stop the pool's worker processes (also done at interpreter exit)."""
        self.pool.close()
