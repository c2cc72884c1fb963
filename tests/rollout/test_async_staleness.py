"""The staleness bound of asynchronous runs, with the rollout side's timing drawn by hypothesis.

The trainer side is the real :class:`AsyncRolloutSource` (requests, the buffer, taking
batches, dropping, versions, checkpoints); the rollout process is replaced by one in this
process that follows the real process's rules (:func:`take_startable`, version tags) at
moments hypothesis chooses: how far it lags behind the posted weights, how many groups one
call takes, how much it generates while the trainer trains.
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf.config.schema import RecipeConfig
from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream
from rlhf.rewards.combine import RewardResult
from rlhf.rollout.async_source import AsyncRolloutSource, oldest_versions
from rlhf.rollout.async_worker import GroupResult, take_startable
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.staleness import earliest_version, staleness_histogram, token_versions
from rlhf.timing import PhaseTimer


# ---- pure bookkeeping ----------------------------------------------------------------------


def test_earliest_version_allows_exactly_eta_updates_of_age():
    # 4 groups per batch, eta = 1: batch k = position // 4 + 1 is trained at version k - 1
    assert [earliest_version(p, 4, 1) for p in (0, 3, 4, 7, 8, 12, 40)] == [0, 0, 0, 0, 1, 2, 9]
    assert [earliest_version(p, 4, 0) for p in (0, 4, 8)] == [0, 1, 2]


def test_token_versions_follow_the_segments_and_mark_padding():
    assert token_versions([(3, 2), (5, 3)], 7).tolist() == [3, 3, 5, 5, 5, -1, -1]
    assert oldest_versions(torch.tensor([[3, 3, 5, -1], [-1, -1, -1, -1], [7, 8, 8, 8]])).tolist()[0::2] == [3, 7]


def test_the_histogram_shares_sum_to_one_and_count_beyond_the_bound():
    shares = staleness_histogram(torch.tensor([0, 1, 1, 3]), max_staleness=1)
    assert shares == {"async/staleness_hist/0": 0.25, "async/staleness_hist/1": 0.5, "async/staleness_hist/>1": 0.25}


def test_requests_start_in_order_and_stop_at_the_first_that_must_wait():
    pending = deque(SimpleNamespace(earliest=e, position=i, name=i) for i, e in enumerate([0, 0, 1, 0, 2, 3]))
    assert [r.name for r in take_startable(pending, held=0, limit=8)] == [0, 1]
    assert [r.name for r in take_startable(pending, held=1, limit=1)] == [2]
    assert [r.name for r in take_startable(pending, held=1, limit=8)] == [3]
    assert [r.name for r in take_startable(pending, held=1, limit=8, wanted=4)] == [4]  # the trainer waits for it
    assert [r.earliest for r in pending] == [3]


# ---- the source against a simulated rollout side ------------------------------------------


class SimulatedRollout:
    """The rollout process's rules in this process; hypothesis decides its timing."""

    def __init__(self, draw):
        self.draw, self.pending, self.out = draw, deque(), deque()
        self.held, self.wanted = 0, -1
        self.mailbox = SimpleNamespace(version=0)
        self.generated: list[tuple[int, int]] = []  # (group id, version), in generation order

    def post(self, roles, updated, version):
        self.mailbox.version = version
        return 0

    def want(self, position):
        self.wanted = position

    def submit(self, requests):
        self.pending.extend(requests)

    def work(self, calls: int) -> None:
        """`calls` generate calls, each with the newest weights posted before it started (as
        the real process fetches them before every call); weights posted while a call runs
        reach the next one."""
        for _ in range(calls):
            self.held = self.mailbox.version
            for request in take_startable(self.pending, self.held, self.draw(st.integers(1, 6)), self.wanted):
                versions = torch.full((len(request.prompts), 3), self.held)
                self.out.append(GroupResult(request.group_id, request.prompts.set("token_versions", versions)))
                self.generated.append((request.group_id, self.held))

    def receive(self, timeout):
        """The trainer waits: the process works until a group comes out (taking the newest
        weights when nothing it holds may start: the real process waits for them)."""
        while not self.out:
            before = len(self.generated)
            self.work(1)
            if len(self.generated) == before:
                assert self.pending, "the trainer waits for a group that was never requested"
                self.held = self.mailbox.version
                assert self.pending[0].earliest <= self.held or self.pending[0].position <= self.wanted, \
                    "deadlock: nothing may start even with the newest weights"
        return [self.out.popleft()]

    def snapshot(self, timeout):
        """Whole calls only: the groups generated so far come back, nothing is half done."""
        finished = list(self.out)
        self.out.clear()
        return finished, {}

    def seconds(self):
        return 0.0, 0.0

    def close(self):
        pass


class Reward:
    def evaluate(self, batch):
        scores = torch.zeros(len(batch))
        return RewardResult(scores=scores, outcome_scores=scores)


def make_source(draw, *, batch_size, n, max_staleness, stale, buffer_size, sync_every):
    config = RecipeConfig()
    config.data.train_batch_size, config.rollout.n = batch_size, n
    run = config.async_training
    run.max_staleness, run.stale, run.buffer_size, run.sync_every = max_staleness, stale, buffer_size, sync_every
    rows = [{"prompt": str(i), "ground_truth": "0"} for i in range(50)]

    def tokenize(rows):
        return Batch({"prompt_ids": torch.tensor([[int(r["prompt"])] for r in rows]), "prompt_mask": torch.ones(len(rows), 1, dtype=torch.long)},
                     {"prompt": [r["prompt"] for r in rows]})

    source = AsyncRolloutSource(config, PromptStream(rows, batch_size, seed=0), tokenize, tokenizer=None, model_path="", sampling=SamplingParams())
    source.process = SimulatedRollout(draw)
    return source


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), batch_size=st.integers(1, 4), max_staleness=st.integers(1, 3), extra=st.integers(0, 6))
def test_drop_mode_never_trains_a_sample_older_than_the_bound_and_wastes_none(data, batch_size, max_staleness, extra):
    sync_every = data.draw(st.integers(1, max_staleness + 1))
    buffer_size = (max_staleness + 1) * batch_size + extra
    source = make_source(data.draw, batch_size=batch_size, n=2, max_staleness=max_staleness, stale="drop", buffer_size=buffer_size,
                         sync_every=sync_every)
    roles = SimpleNamespace(reward=Reward(), actor=SimpleNamespace(named_weights=lambda: []))
    trained = []
    for _ in range(12):
        sampled = source.next_batch(roles, PhaseTimer())
        ages = source.version - sampled.batch["policy_version"]
        assert int(ages.max()) <= max_staleness and sampled.metrics["async/staleness_max"] <= max_staleness
        assert sampled.metrics["async/dropped"] == 0.0
        assert sampled.metrics["async/buffer_size"] <= buffer_size
        trained += sampled.batch["group_index"][::2]
        source.after_step(roles, True)
        source.process.work(data.draw(st.integers(0, 3)))  # the rollout side works while the trainer trains
    assert trained == sorted(trained) == list(range(len(trained)))  # every group once, in request order


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), batch_size=st.integers(1, 3))
def test_correct_mode_runs_ahead_to_the_buffer_and_keeps_old_samples(data, batch_size):
    source = make_source(data.draw, batch_size=batch_size, n=1, max_staleness=1, stale="correct", buffer_size=4 * batch_size, sync_every=1)
    roles = SimpleNamespace(reward=Reward(), actor=SimpleNamespace(named_weights=lambda: []))
    trained, oldest = [], 0
    for _ in range(10):
        sampled = source.next_batch(roles, PhaseTimer())
        assert sampled.metrics["async/dropped"] == 0.0 and sampled.metrics["async/buffer_size"] <= 4 * batch_size
        oldest = max(oldest, sampled.metrics["async/staleness_max"])
        trained += sampled.batch["group_index"]
        source.after_step(roles, True)
        source.process.work(data.draw(st.integers(0, 4)))
    assert trained == list(range(len(trained)))
    assert oldest <= 3  # a group requested with 4 batches ahead is at most 3 updates old


def test_a_checkpoint_holds_the_buffer_and_the_requests_in_flight(tmp_path):
    """Round trip through torch.save / torch.load(weights_only=True) (loop.pt): returned groups
    and their versions come back, requests in flight are requested again, and training
    continues with the same groups in the same order as without the interruption."""
    draws = iter([6] * 1000)
    source = make_source(lambda strategy: next(draws), batch_size=2, n=1, max_staleness=1, stale="drop", buffer_size=6, sync_every=1)
    roles = SimpleNamespace(reward=Reward(), actor=SimpleNamespace(named_weights=lambda: []))
    first = source.next_batch(roles, PhaseTimer()).batch["group_index"]
    source.after_step(roles, True)
    source.process.work(1)
    path = tmp_path / "loop.pt"
    torch.save({"rollout_source": source.state_dict()}, path)
    state = torch.load(path, weights_only=True)["rollout_source"]
    assert len(state["ready"]) + len(state["in_flight"]) == 6 - 2 + 2  # refilled after the take

    def train(source, steps):
        groups = []
        for _ in range(steps):
            groups.append(source.next_batch(roles, PhaseTimer()).batch["group_index"])
            source.after_step(roles, True)
        return groups

    expected = train(source, 3)

    draws = iter([6] * 1000)
    resumed = make_source(lambda strategy: next(draws), batch_size=2, n=1, max_staleness=1, stale="drop", buffer_size=6, sync_every=1)
    resumed.load_state_dict(state)
    resumed._submit(sorted(resumed.in_flight.items(), key=lambda item: item[1][0]))  # what _start does when it starts the process
    resumed.process.mailbox.version = resumed.version
    got = train(resumed, 3)
    assert first == [0, 1] and got == expected == [[2, 3], [4, 5], [6, 7]]


class CoinReward:
    """Random 0/1 scores: about half the groups of two samples have equal rewards."""

    def __init__(self, draw):
        self.draw = draw

    def evaluate(self, batch):
        scores = torch.tensor([float(self.draw(st.booleans())) for _ in range(len(batch))])
        return RewardResult(scores=scores, outcome_scores=scores)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), batch_size=st.integers(1, 4), max_staleness=st.integers(1, 2), extra_rounds=st.integers(0, 3))
def test_dynamic_sampling_takes_more_groups_without_deadlock_or_stale_samples(data, batch_size, max_staleness, extra_rounds):
    """An update that sets uninformative groups aside takes more than one batch of groups, so
    it reaches groups sooner than their gate planned: the trainer says which group it waits
    for and the rollout side starts it; the bound still holds."""
    source = make_source(data.draw, batch_size=batch_size, n=2, max_staleness=max_staleness, stale="drop",
                         buffer_size=(max_staleness + 1) * batch_size, sync_every=1)
    source.config.data.dynamic_sampling.enabled = True
    source.config.data.dynamic_sampling.max_extra_rounds = extra_rounds
    roles = SimpleNamespace(reward=CoinReward(data.draw), actor=SimpleNamespace(named_weights=lambda: []))
    seen = []
    for _ in range(8):
        sampled = source.next_batch(roles, PhaseTimer())
        assert len(sampled.batch) == 2 * batch_size
        assert int((source.version - sampled.batch["policy_version"]).max()) <= max_staleness
        assert sampled.metrics["dynamic_sampling/rounds"] <= 1 + extra_rounds
        assert len(sampled.all_scores) >= 2 * batch_size
        seen += sampled.batch["group_index"][::2]
        source.after_step(roles, True)
        source.process.work(data.draw(st.integers(0, 2)))
    assert len(seen) == len(set(seen))  # no group is trained twice
