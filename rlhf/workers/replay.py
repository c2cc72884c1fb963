"""A replay buffer of whole multi-turn trajectories, for ArCHer's off-policy utterance critic.

The buffer keeps trajectories, not single turns: one forward of a critic over a trajectory
gives the values of all its turns (each turn's state is a prefix of the next one), so a sampled
turn is read from its trajectory's tokens. Capacity is counted in turns, as the recipe's
`algorithm.archer.buffer_size` is.

Notation: L tokens of a trajectory (real prompt tokens, then every real response token:
actions and observations interleaved), K turns of that trajectory. Positions are indices into
the L tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf.data.batch import Batch

TRAJECTORY_FIELDS = ("prompt_ids", "prompt_mask", "response_ids", "response_mask", "action_starts", "action_ends", "turn_rewards", "num_turns")


@dataclass(frozen=True)
class Trajectory:
    """One episode as the critic reads it (CPU tensors).

    The state of turn k is `ids[:action_starts[k]]`, its action `ids[action_starts[k]:action_ends[k]]`.
    """

    ids: torch.Tensor
    """[L] long: prompt ++ response tokens, no padding."""
    action_starts: torch.Tensor
    """[K] long: position of the first token of action k."""
    action_ends: torch.Tensor
    """[K] long: one past the last token of action k."""
    turn_rewards: torch.Tensor
    """[K] float32."""
    terminal: bool
    """True when nothing can follow the last turn, so its value is its reward alone: the episode
    ended with done, or was cut by the turn or token budget of a task whose budget is part of
    the game (the default). False only for a cut episode of a critic that bootstraps them."""

    @property
    def num_turns(self) -> int:
        return int(self.action_starts.numel())

    def value_positions(self) -> torch.Tensor:
        """[K] where V(s_k) is read: the last token before action k (the state has seen it all)."""
        return self.action_starts - 1

    def q_positions(self) -> torch.Tensor:
        """[K] where Q(s_k, a_k) is read: the last token of action k."""
        return self.action_ends - 1

    def next_positions(self) -> torch.Tensor:
        """[K] where V̄(s_{k+1}) is read: the last token before action k + 1; after the last
        action, the last token of the trajectory (its final observation, if any). That read is
        used only when the episode is not terminal; a terminal one does not bootstrap."""
        last = torch.tensor([self.ids.numel() - 1], dtype=torch.long)
        return torch.cat([self.action_starts[1:] - 1, last])

    def terminal_turns(self) -> torch.Tensor:
        """[K] bool: True only on the last turn of a terminal episode."""
        flags = torch.zeros(self.num_turns, dtype=torch.bool)
        flags[-1] = self.terminal
        return flags

    def to_dict(self) -> dict:
        """Tensors and a bool only, so a checkpoint loads with `torch.load(weights_only=True)`."""
        return {"ids": self.ids, "action_starts": self.action_starts, "action_ends": self.action_ends,
                "turn_rewards": self.turn_rewards, "terminal": self.terminal}

    @staticmethod
    def from_dict(state: dict) -> "Trajectory":
        return Trajectory(state["ids"], state["action_starts"], state["action_ends"], state["turn_rewards"], bool(state["terminal"]))


def trajectories_from_batch(batch: Batch, *, bootstrap_truncated: bool = False) -> list[Trajectory]:
    """The rows of a multi-turn Batch as trajectories (rows with no turn are left out).

    Reads prompt_ids/prompt_mask (left-padded), response_ids/response_mask (right-padded),
    action_starts/action_ends [B, K] (response columns), turn_rewards [B, K], num_turns [B]
    and the non-tensor `truncated` [B] (a missing flag means the episode ended with done).

    Args:
        bootstrap_truncated: False (default): every episode is terminal after its last turn.
            The env's turn and token budgets are part of its task (guess within 5 turns), the
            policy's return stops there, and so must the critic's values: bootstrapping a cut
            episode from V̄(s') would value an endless game nobody plays, and its failures would
            never teach the critic a 0. True: a truncated episode bootstraps (Pardo et al. 2018,
            "Time Limits in Reinforcement Learning"), for environments whose budget is only a
            training convenience.
    """
    missing = [key for key in TRAJECTORY_FIELDS if key not in batch]
    if missing:
        raise ValueError(f"the utterance critic needs a multi-turn batch; this one lacks {', '.join(missing)}")
    truncated = batch["truncated"] if "truncated" in batch else [False] * len(batch)
    trajectories = []
    for row in range(len(batch)):
        turns = int(batch["num_turns"][row])
        if turns == 0:
            continue
        prompt = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()]
        response = batch["response_ids"][row][: int(batch["response_mask"][row].sum())]
        offset = prompt.numel()
        if offset == 0:
            raise ValueError(f"row {row} of the batch has an empty prompt: the state before its first action has no token to read")
        trajectories.append(Trajectory(
            ids=torch.cat([prompt, response]).long().cpu(),
            action_starts=(batch["action_starts"][row, :turns].long() + offset).cpu(),
            action_ends=(batch["action_ends"][row, :turns].long() + offset).cpu(),
            turn_rewards=batch["turn_rewards"][row, :turns].float().cpu(),
            terminal=not (bootstrap_truncated and bool(truncated[row])),
        ))
    return trajectories


@dataclass(frozen=True)
class TurnSample:
    """Turns drawn from the buffer, grouped by trajectory so each is read by one forward."""

    trajectories: list[Trajectory]
    """U distinct trajectories, in the order they were first drawn."""
    rows: torch.Tensor
    """[N] long: which of the U trajectories each drawn turn belongs to."""
    turns: torch.Tensor
    """[N] long: the turn index within that trajectory."""


class ReplayBuffer:
    """The most recent trajectories, holding at most `capacity` turns (oldest leave first).

    The newest trajectory always stays, even when it alone has more turns than the capacity,
    so a sample is never drawn from an empty buffer right after a push. Samples are whole
    trajectories (:meth:`sample`), drawn with the buffer's own generator: its state is part of
    :meth:`state_dict`, so a resumed run draws exactly the turns the straight run would.
    """

    def __init__(self, capacity: int, seed: int):
        if capacity < 1:
            raise ValueError(f"the replay buffer's capacity (algorithm.archer.buffer_size) must be >= 1 turn, got {capacity}")
        self.capacity = capacity
        self.generator = torch.Generator().manual_seed(seed)
        self.trajectories: list[Trajectory] = []

    @property
    def num_turns(self) -> int:
        return sum(trajectory.num_turns for trajectory in self.trajectories)

    def __len__(self) -> int:
        return len(self.trajectories)

    def push(self, trajectories: list[Trajectory]) -> None:
        """Append, then drop the oldest trajectories while more than `capacity` turns are held."""
        self.trajectories.extend(trajectories)
        total = self.num_turns
        while total > self.capacity and len(self.trajectories) > 1:
            total -= self.trajectories.pop(0).num_turns

    def sample(self, num_turns: int) -> TurnSample:
        """At least `num_turns` turns, as whole trajectories: trajectories drawn uniformly without
        replacement, the fewest whose turns reach `num_turns` (or all of them), every turn of each.

        Every stored turn is equally likely to be in a sample (a trajectory is drawn with the same
        chance whatever its length, and brings all its turns), and a critic step pays one forward
        per trajectory for all its turns, where drawing single turns would pay one forward per
        turn: about K times fewer forwards for K-turn episodes, at the cost of correlated turns
        within a step.
        """
        if not self.trajectories:
            raise RuntimeError("the replay buffer is empty: observe a batch of trajectories before sampling")
        order = torch.randperm(len(self.trajectories), generator=self.generator)
        counts = torch.tensor([self.trajectories[index].num_turns for index in order.tolist()])
        enough = int(torch.searchsorted(counts.cumsum(0), torch.tensor(num_turns))) + 1
        picked = [self.trajectories[index] for index in order[:enough].tolist()]
        rows = torch.cat([torch.full((t.num_turns,), row, dtype=torch.long) for row, t in enumerate(picked)])
        turns = torch.cat([torch.arange(t.num_turns) for t in picked])
        return TurnSample(picked, rows, turns)

    def state_dict(self) -> dict:
        """Everything a resume needs: the stored trajectories and the generator's state."""
        return {"capacity": self.capacity, "generator": self.generator.get_state(),
                "trajectories": [trajectory.to_dict() for trajectory in self.trajectories]}

    def load_state_dict(self, state: dict) -> None:
        self.capacity = int(state["capacity"])
        self.generator.set_state(state["generator"])
        self.trajectories = [Trajectory.from_dict(item) for item in state["trajectories"]]
