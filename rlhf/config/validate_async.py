"""Checks of the off-policy settings: `actor.off_policy` (the corrections) and, for
asynchronous runs, `rollout.mode` with `async_training`.

Correction names come from their registry in :mod:`rlhf.algorithms.off_policy`, imported
lazily as the other registries are (see :mod:`rlhf.config.validate`).
"""

from __future__ import annotations

from collections.abc import Iterable

from rlhf.config.choices import choice_error
from rlhf.config.schema import RecipeConfig


def off_policy_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Every problem of `actor.off_policy`: unknown names, bounds that cannot work, and a
    correction without the rollout engine's logprobs it needs."""
    from rlhf.algorithms.off_policy import MIS_RATIOS, OFF_POLICY_CORRECTIONS

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


def async_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Every problem of `rollout.mode` and `async_training`: ranges, a buffer smaller than one
    batch, settings under which nothing can overlap or the two sides would wait on each other
    forever, and options the asynchronous source does not serve yet."""

    mode_error = choice_error("rollout.mode", cfg.rollout.mode, ("sync", "async"))
    if mode_error or cfg.rollout.mode != "async":
        yield from filter(None, [mode_error])
        return
    run = cfg.async_training
    yield from filter(None, [choice_error("async_training.stale", run.stale, ("drop", "correct"))])
    for key, value, minimum in (("max_staleness", run.max_staleness, 0), ("buffer_size", run.buffer_size, 0), ("sync_every", run.sync_every, 1),
                                ("generate_groups", run.generate_groups, 0), ("rollout_threads", run.rollout_threads, 1)):
        if value < minimum:
            yield f"async_training.{key}: must be >= {minimum}, got {value}"
    if not run.timeout_s > 0:
        yield f"async_training.timeout_s: must be > 0 (seconds), got {run.timeout_s}"
    batch = cfg.data.train_batch_size
    if run.max_staleness == 0:
        yield ("async_training.max_staleness: 0 makes every sample on-policy, so the rollout side must wait for each update "
               "and nothing overlaps; allow at least 1 or use rollout.mode: sync")
    if 0 < run.buffer_size < batch:
        yield (f"async_training.buffer_size: {run.buffer_size} groups is smaller than one batch (data.train_batch_size = {batch}), "
               "so the trainer would wait forever; make it at least that")
    if run.stale == "drop" and run.sync_every > run.max_staleness + 1:
        yield (f"async_training.sync_every ({run.sync_every}) > async_training.max_staleness + 1 ({run.max_staleness + 1}): the rollout "
               "side would wait for weights the trainer has not sent yet; push weights at least every max_staleness + 1 updates")
    if run.stale == "correct" and cfg.actor.off_policy.correction == "none":
        yield ("async_training.stale: 'correct' keeps samples older than max_staleness, which needs an off-policy correction; "
               "set actor.off_policy.correction (tis, mis, icepop or decoupled) or use stale: drop")
    if cfg.distributed.backend == "ray" and cfg.resources.pool_of("rollout") == cfg.resources.actor:
        yield ("resources.rollout: rollout.mode: async on the Ray backend streams from a rollout pool of its own (the rollout and the "
               "trainer on the same workers could not overlap); name another pool, e.g. resources.pools.gen={devices_per_node: 1} "
               "and resources.rollout=gen")
    if cfg.distributed.backend == "ray" and run.sync_every > 1 and cfg.sync.check_every:
        yield (f"sync.check_every: the check compares the rollout pool's engines with the trainer right after an update, but with "
               f"async_training.sync_every = {run.sync_every} they get the weights only every {run.sync_every} updates; set "
               "sync.check_every: 0 or async_training.sync_every: 1")
    if cfg.env.type and run.partial:
        yield ("async_training.partial: an episode of a multi-turn run (env.type) is played with one policy version from its first "
               "action to its last, so there is nothing to pause; set it to false")
