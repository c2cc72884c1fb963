"""Checks of the off-policy settings: `actor.off_policy` (the corrections) and, for
asynchronous runs, `rollout.mode` with `async_training`.

Correction names come from their registry in :mod:`rlhf.algorithms.off_policy`, imported
lazily as the other registries are (see :mod:`rlhf.config.validate`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rlhf.config.schema import RecipeConfig


def off_policy_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Every problem of `actor.off_policy`: unknown names, bounds that cannot work, and a
    correction without the rollout engine's logprobs it needs."""
    from rlhf.algorithms.off_policy import MIS_RATIOS, OFF_POLICY_CORRECTIONS
    from rlhf.config.validate import choice_error

    off = cfg.actor.off_policy
    yield from filter(None, (choice_error("actor.off_policy.correction", off.correction, OFF_POLICY_CORRECTIONS),
                             choice_error("actor.off_policy.mis_ratio", off.mis_ratio, MIS_RATIOS)))
    if not off.tis_cap > 0:
        yield f"actor.off_policy.tis_cap: must be > 0, got {off.tis_cap!r}"
    if off.decoupled_cap is not None and not off.decoupled_cap > 0:
        yield f"actor.off_policy.decoupled_cap: must be > 0 (or null: uncapped), got {off.decoupled_cap!r}"
    for key, band in (("actor.off_policy.mis_bounds", off.mis_bounds), ("actor.off_policy.icepop_bounds", off.icepop_bounds)):
        if len(band) != 2 or not 0 <= band[0] <= 1 <= band[1]:
            yield (f"{key}: must be [lower, upper] with 0 <= lower <= 1 <= upper (a token or sequence the trainer "
                   f"and the rollout engine agree on has ratio 1 and must be kept), got {list(band)!r}")
    if off.correction != "none" and not cfg.rollout.logprobs:
        yield (f"actor.off_policy.correction: {off.correction!r} weighs each token by pi_trainer / pi_rollout, which needs "
               "the rollout engine's logprobs; set rollout.logprobs: true")
