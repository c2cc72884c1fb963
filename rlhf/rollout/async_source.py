"""The asynchronous rollout source: a rollout process generates beside training (`rollout.mode: async`).

SRL (Mei et al. 2023) splits RL into actors that generate and learners that train, joined by
streams; AReaL (Fu et al. 2025) bounds how stale a streamed sample may be. Here one rollout
process (:mod:`rlhf.rollout.async_worker`) generates groups while the trainer trains, and
this source, in the trainer's process, keeps the stream going:

    (1) keep the pipeline full: request groups (one prompt, rollout.n samples) until
        `async_training.buffer_size` are requested but not yet trained on; with `stale: drop`
        each names the oldest version that may start it (:mod:`rlhf.rollout.staleness`)
    (2) take the next data.train_batch_size groups in request order as they arrive (the
        trainer waits only when none is ready: `time/trainer_wait_s`, and then tells the
        rollout process which group it waits for); a group older than `max_staleness` is
        dropped and counted, or kept with `stale: correct`
    (3) request replacements at once, so the rollout side generates during the update
    (4) score the batch with the reward sources, in this process
In a multi-turn run (`env.type`) a group is `rollout.n` episodes of one prompt row, played to
their end by the rollout process against environments of its own
(:mod:`rlhf.rollout.async_episodes`); step (4) grades their final answers.
After each step the loop calls :meth:`AsyncRolloutSource.after_step`, which posts the new
weights to the rollout process every `async_training.sync_every` versions.

Batch fields it adds to the sync source's: `token_versions [B, R]` (the policy version that
sampled each token, −1 on padding) and `policy_version [B]` (its oldest token's version).
"""

from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Callable

import torch

from rlhf.config.schema import RecipeConfig
from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream
from rlhf.models.lora import base_module
from rlhf.rollout.async_worker import GroupRequest, GroupResult, WorkerSpec
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.multi_turn import score_episodes
from rlhf.rollout.registry import rollout_engine
from rlhf.rollout.rollout_process import RolloutProcess, RolloutProcessError
from rlhf.rollout.source import PromptGroups, Sampled, score
from rlhf.rollout.staleness import earliest_version, staleness, staleness_histogram
from rlhf.rollout.sync_source import DynamicRounds


class AsyncRolloutSource:
    """Scored batches streamed from a rollout process (see the module docstring).

    Args:
        config: the recipe (rollout, async_training, data.train_batch_size).
        stream: batches of data.train_batch_size prompt rows.
        tokenize: prompt rows -> a left-padded prompt Batch.
        tokenizer, model_path, sampling: the policy's tokenizer, its checkpoint (for engines
            that load their own model) and how responses are sampled.
        with_baseline: the rollout process also samples one greedy response per group, scored
            here as `baseline_scores` (ReMax).
    """

    def __init__(self, config: RecipeConfig, stream: PromptStream, tokenize: Callable[[list[dict]], Batch], *, tokenizer, model_path: str,
                 sampling: SamplingParams, with_baseline: bool = False):
        self.config, self.settings = config, config.async_training
        self.prompts, self.tokenize = PromptGroups(stream), tokenize
        self.tokenizer, self.model_path, self.sampling, self.with_baseline = tokenizer, model_path, sampling, with_baseline
        self.batch_groups, self.n = config.data.train_batch_size, config.rollout.n
        self.episodes = bool(config.env.type)
        """Multi-turn: groups are episodes (the rows travel, the rollout process plays them)."""
        self.capacity = self.settings.buffer_size or (self.settings.max_staleness + 1) * self.batch_groups
        self.version = 0
        """The trainer's policy version: updates applied so far."""
        self.next_position = 0
        """Stream position of the next group requested (groups are trained in this order)."""
        self.unrequested: deque[tuple[int, dict]] = deque()  # (group id, row) drawn from the stream, not yet requested
        self.in_flight: dict[int, tuple[int, dict]] = {}  # group id -> (position, row), requested, not yet back
        self.begun: dict[int, list] = {}  # group id -> its rows' responses begun before a resume (request them with these)
        self.ready: deque[GroupResult] = deque()  # back, not yet trained on
        self.dropped_total = 0
        self.process: RolloutProcess | None = None
        self.clock_seen = (0.0, 0.0)  # the rollout process's (waiting, generating) seconds at the last batch
        self.last: Sampled | None = None

    # -- the loop's interface -------------------------------------------------------------

    def next_batch(self, roles, timer) -> Sampled:
        """Steps (1)-(4) of the module docstring; with `data.dynamic_sampling`, more groups
        until the batch is informative (:meth:`_informative`)."""
        self._start(roles)
        if self.config.data.dynamic_sampling.enabled:
            batch, all_scores, metrics, dropped = self._informative(roles, timer)
        else:
            batch, metrics, dropped = self._round(roles, timer, self.batch_groups)
            all_scores = batch["scores"]
        metrics.update(self._metrics(batch, dropped))
        self.last = Sampled(batch, all_scores, metrics)
        return self.last

    def _round(self, roles, timer, groups: int) -> tuple[Batch, dict[str, float], int]:
        """Steps (1)-(4) for `groups` groups: (the scored batch, reward metrics, groups dropped as too old)."""
        self._request_more()  # 1.
        with timer.phase("trainer_wait"):  # 2.
            taken, dropped = self._take(groups)
        self._request_more()  # 3.
        batch = Batch.concat([group.batch for group in taken])
        batch.meta["tokenizer"] = self.tokenizer
        if self.episodes:  # 4.
            metrics = score_episodes(roles.reward, batch, self.tokenizer, timer)
        else:
            with timer.phase("reward"):
                metrics = score(roles.reward, batch)
        if self.with_baseline:  # ReMax: the greedy responses the rollout process sampled beside
            with timer.phase("baseline"):
                baselines = Batch.concat([group.baseline for group in taken])
                baselines.meta["tokenizer"] = self.tokenizer
                baseline, _, _ = roles.reward.score(baselines)
                batch.set("baseline_scores", baseline.repeat_interleave(self.n))
                metrics["remax/baseline_mean"] = baseline.mean().item()
        return batch, metrics, dropped

    def _informative(self, roles, timer) -> tuple[Batch, torch.Tensor, dict[str, float], int]:
        """DAPO's dynamic sampling (Yu et al. 2025, sec. 3.2) on the stream: groups whose
        rewards are all equal are set aside and the next groups taken, for at most
        `max_extra_rounds` more rounds; the batch is then filled up with set-aside groups (as
        the synchronous source does, :class:`rlhf.rollout.sync_source.DynamicRounds`). Unlike
        it, an extra round takes only the groups still missing, not a whole batch. Returns
        (batch, every score seen, metrics, groups dropped as too old)."""
        rounds, dropped = DynamicRounds(self.n), 0
        while rounds.kept_groups < self.batch_groups and rounds.count <= self.config.data.dynamic_sampling.max_extra_rounds:
            batch, metrics, round_dropped = self._round(roles, timer, self.batch_groups - rounds.kept_groups)
            rounds.add(batch, metrics)
            dropped += round_dropped
        return (*rounds.result(self.batch_groups), dropped)

    def _metrics(self, batch: Batch, dropped: int) -> dict[str, float]:
        """Staleness, buffer and both sides' idle time (see the README's list)."""
        ages = staleness(self.version, batch["policy_version"][:: self.n])
        newest = batch["token_versions"].max(dim=-1).values  # a partial rollout's tokens span several versions
        clock, seen = self.process.seconds(), self.clock_seen
        self.clock_seen = clock
        return {
            "async/staleness_mean": ages.float().mean().item(),
            "async/staleness_max": float(ages.max()),
            **staleness_histogram(ages, self.settings.max_staleness),
            "async/mixed_version_share": (newest > batch["policy_version"]).float().mean().item(),
            "async/dropped": float(dropped),
            "async/dropped_total": float(self.dropped_total),
            "async/buffer_ready": float(len(self.ready)),
            "async/buffer_size": float(len(self.ready) + len(self.in_flight)),
            "async/policy_version": float(self.version),
            "time/rollout_wait_s": clock[0] - seen[0],
            "time/rollout_generate_s": clock[1] - seen[1],
            **groups_per_worker(batch, self.n),
        }

    def after_step(self, roles, updated: bool) -> int:
        """The policy moved one version; every `sync_every` versions its weights go to the
        rollout process. Returns the bytes posted. A step without a policy update (a critic
        warm-up step) makes a version with the same weights, posted without copying: the
        rollout side's staleness gate counts steps, and must not wait for an update that
        never comes."""
        self.version += 1
        if self.process is None or self.version % self.settings.sync_every:
            return 0
        return self.process.post(roles, updated, self.version)

    def close(self) -> None:
        """Stop the rollout process (nothing is left running)."""
        if self.process is not None:
            self.process.close()
            self.process = None

    # -- pipeline ---------------------------------------------------------------------------

    def _start(self, roles) -> None:
        """Start the rollout process with the actor's current weights as version `self.version`
        (on Ray: the rollout pool's services, whose engines the loop's first sync loaded), and
        request again what was requested but never came back (after a resume)."""
        if self.process is not None:
            return
        if self.config.distributed.backend == "ray":
            from rlhf.distributed.async_rollout import RayRolloutSide

            spec = worker_spec(self.config, None, None, self.tokenizer, self.model_path, self.sampling, self.with_baseline)
            self.process = RayRolloutSide(roles.processes, spec, self.version)
        else:
            self.process = self._local_process(roles)
        self._submit(sorted(self.in_flight.items(), key=lambda item: item[1][0]))

    def _local_process(self, roles) -> RolloutProcess:
        """The rollout process beside this one, started from the actor's weights; the trainer
        keeps the CPUs it does not run on."""
        weights = dict(roles.actor.named_weights())
        policy = base_module(roles.actor.engine.module)
        spec = worker_spec(self.config, policy, next(iter(weights.values())).dtype, self.tokenizer, self.model_path, self.sampling,
                           self.with_baseline)
        process = RolloutProcess(spec, weights.items(), self.version)
        if spec.cpus:
            os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - set(spec.cpus))
        return process

    def _request_more(self) -> None:
        """Request groups until `capacity` are requested or ready but not trained on."""
        new = []
        while len(self.in_flight) + len(self.ready) < self.capacity:
            if not self.unrequested:
                rows, groups = self.prompts.next()
                self.unrequested.extend(zip(groups, rows))
            group_id, row = self.unrequested.popleft()
            self.in_flight[group_id] = (self.next_position, row)
            new.append((group_id, (self.next_position, row)))
            self.next_position += 1
        self._submit(new)

    def _submit(self, groups: list[tuple[int, tuple[int, dict]]]) -> None:
        """Send requests for `groups` [(group id, (position, row))]: the rows (multi-turn), or
        their prompts tokenised together."""
        if not groups:
            return
        gated = self.settings.stale == "drop"
        earliest = [earliest_version(position, self.batch_groups, self.settings.max_staleness) if gated else 0 for _, (position, _) in groups]
        if self.episodes:
            requests = [GroupRequest(group_id, position, first, None, rows=[row] * self.n)
                        for (group_id, (position, row)), first in zip(groups, earliest)]
        else:
            prompts = self.tokenize([row for _, (_, row) in groups]).set("group_index", [group_id for group_id, _ in groups])
            requests = []
            for index, ((group_id, (position, _)), first) in enumerate(zip(groups, earliest)):
                one = prompts.select([index] * self.n)
                requests.append(GroupRequest(group_id, position, first, Batch(one.tensors, one.non_tensors, {}), self.begun.pop(group_id, None)))
        self.process.submit(requests)

    def _take(self, groups: int) -> tuple[list[GroupResult], int]:
        """The next `groups` groups fresh enough to train on (waiting for them), and how many
        were dropped as too old on the way."""
        taken, dropped = [], 0
        while len(taken) < groups:
            group = self._next_ready()
            version = int(group.batch["policy_version"].min())
            if self.version - version > self.settings.max_staleness and self.settings.stale == "drop":
                dropped += 1
                self._request_more()
                continue
            taken.append(group)
        self.dropped_total += dropped
        return taken, dropped

    def _next_ready(self) -> GroupResult:
        """The oldest returned group, waiting up to `async_training.timeout_s` for one."""
        deadline = time.monotonic() + self.settings.timeout_s
        if not self.ready and self.in_flight:
            self.process.want(min(position for position, _ in self.in_flight.values()))
        while not self.ready:
            results = self.process.receive(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            self._accept(results or [])
            if results is None and time.monotonic() > deadline:
                raise RolloutProcessError(
                    f"{self.process.description} delivered no group for {self.settings.timeout_s:.0f} s (async_training.timeout_s); "
                    "the run stops (resume from the last checkpoint)")
        return self.ready.popleft()

    def _accept(self, results: list[GroupResult]) -> None:
        """Returned groups join the buffer, tagged with their oldest token's version."""
        for result in results:
            del self.in_flight[result.group_id]
            result.batch.set("policy_version", oldest_versions(result.batch["token_versions"]))
            self.ready.append(result)

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything to continue losing nothing: the stream's position, rows drawn but not
        requested, requests not back yet with the responses the rollout process has begun for
        them (a snapshot: it pauses after the current decoding step and goes on; requested
        again on resume, they go on from there), returned groups not trained on (with their
        versions), the policy version and the drop count."""
        begun = dict(self.begun)  # a resumed run's prefixes not requested again yet
        if self.process is not None:
            finished, snapshot = self.process.snapshot(self.settings.timeout_s)
            self._accept(finished)
            begun.update(snapshot)
        return {
            "prompts": self.prompts.state_dict(), "version": self.version, "next_position": self.next_position,
            "unrequested": [[group_id, row] for group_id, row in self.unrequested],
            "in_flight": [[group_id, position, row] for group_id, (position, row) in self.in_flight.items()],
            "begun": [[group_id, rows] for group_id, rows in begun.items() if group_id in self.in_flight],
            "ready": [{"group_id": group.group_id, "tensors": group.batch.tensors, "non_tensors": group.batch.non_tensors,
                       "baseline": None if group.baseline is None else [group.baseline.tensors, group.baseline.non_tensors]} for group in self.ready],
            "dropped_total": self.dropped_total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state["prompts"])
        self.version, self.next_position = int(state["version"]), int(state["next_position"])
        self.unrequested = deque((int(group_id), row) for group_id, row in state["unrequested"])
        self.in_flight = {int(group_id): (int(position), row) for group_id, position, row in state["in_flight"]}
        self.begun = {int(group_id): rows for group_id, rows in state.get("begun", [])}
        self.ready = deque(GroupResult(int(g["group_id"]), Batch(dict(g["tensors"]), dict(g["non_tensors"]), {}),
                                       None if g["baseline"] is None else Batch(dict(g["baseline"][0]), dict(g["baseline"][1]), {}))
                           for g in state["ready"])
        self.dropped_total = int(state["dropped_total"])


def groups_per_worker(batch: Batch, n: int) -> dict[str, float]:
    """`async/groups_from_worker/<rank>`: how many of the batch's groups (of `n` rows) each
    rollout worker of a Ray pool generated (nothing for a batch without `rollout_rank`)."""
    if "rollout_rank" not in batch:
        return {}
    ranks, counts = torch.as_tensor(batch["rollout_rank"])[::n].unique(return_counts=True)
    return {f"async/groups_from_worker/{int(rank)}": float(count) for rank, count in zip(ranks, counts)}


def oldest_versions(token_versions: torch.Tensor) -> torch.Tensor:
    """[B] the oldest version among each row's tokens (−1 marks padding)."""
    big = torch.iinfo(token_versions.dtype).max
    return torch.where(token_versions >= 0, token_versions, big).min(dim=-1).values


def worker_spec(config: RecipeConfig, policy: torch.nn.Module | None, dtype: torch.dtype | None, tokenizer, model_path: str,
                sampling: SamplingParams, with_baseline: bool) -> WorkerSpec:
    """The rollout process's spec for `config` and the Hugging Face model `policy` (see
    :class:`WorkerSpec`); None on Ray, whose rollout workers have their engines already."""
    settings = config.async_training
    ray = config.distributed.backend == "ray"
    return WorkerSpec(config=config, architecture=None if ray else policy.config, generation_config=None if ray else policy.generation_config,
                      dtype=dtype,
                      tokenizer=tokenizer, model_path=model_path, sampling=sampling, partial=settings.partial, with_baseline=with_baseline,
                      episodes=bool(config.env.type), pausable=rollout_engine(config.rollout.engine).can_pause and not config.env.type,
                      generate_groups=settings.generate_groups or config.data.train_batch_size,
                      threads=settings.rollout_threads, seed=config.trainer.seed + 1, cpus=[] if ray else list(settings.rollout_cpus),
                      trainer_pid=None if ray else os.getpid())
