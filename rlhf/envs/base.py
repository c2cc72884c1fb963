"""The environment protocol of multi-turn episodes.

One `Environment` instance plays one episode:

    observation = env.reset(row)          # text after the prompt (may be empty)
    step = env.step(action)               # the policy's action text -> Step
    ... until step.done, env.max_turns actions, or the context budget is spent

Rewards may come every turn or only at the end (`Step.reward`); `Step.info` carries anything
else, and two keys mean something to the trainer: `info["success"]` (bool, logged as
`env/success_rate`) and `info["tool_calls"]` (int, calls made during this step).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass
class Step:
    """What the environment answers to one action."""

    observation: str
    """Text shown to the policy before its next action ('' for none)."""
    reward: float = 0.0
    """Reward of this turn."""
    done: bool = False
    """The episode is over (the observation is then not shown)."""
    info: dict[str, Any] = field(default_factory=dict)
    """Anything else; `success` and `tool_calls` are logged."""


@runtime_checkable
class Environment(Protocol):
    """One episode's environment (see the module docstring)."""

    def reset(self, row: dict) -> str:
        """Start the episode for dataset row `row`; returns the first observation."""
        ...

    def step(self, action: str) -> Step:
        """Apply the policy's action; returns the observation, reward and whether it is done."""
        ...


@runtime_checkable
class Demonstrator(Protocol):
    """Optional: environments that can play legal (not necessarily good) actions themselves,
    which the supervised warm start imitates so that RL starts with non-zero reward."""

    def demo_action(self, rng: random.Random) -> str:
        """A legal action for the current state of the episode, drawn with `rng`."""
        ...
