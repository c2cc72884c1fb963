"""The `env` section: multi-turn episodes against an environment (see :mod:`rlhf.envs`).

Without `env.type` a run is single-turn: one prompt, one response, one score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EnvConfig:
    """The environment every episode of a multi-turn run plays against."""

    type: str = ""
    """A built-in environment (guess_number, twenty_questions, tool), 'class' for a user's
    class (env.path and env.name), or '' for single-turn runs."""
    path: str = ""
    """type 'class': the Python file that defines the environment class."""
    name: str = ""
    """type 'class': the class in env.path (one instance per episode, built with env.kwargs)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the environment's constructor."""
    max_turns: int = 8
    """An episode ends after this many actions (the last one is marked truncated unless done)."""
    max_tokens_per_turn: int = 32
    """Most tokens the policy may generate in one action."""
    max_total_tokens: int = 512
    """Context budget of a whole trajectory (prompt, actions and observations): an episode whose
    next turn would not fit ends, marked truncated."""
    timeout_s: float = 30.0
    """Longest one env.reset or env.step may take before the run stops with an error naming the
    episode and turn."""
    workers: int = 1
    """Worker processes that run a user's environment class ('class'), each holding a share
    of the episodes; built-in environments run in this process."""
    observation_template: str = "\n{observation}\n"
    """How an observation is inserted when the prompt is not a chat (data.chat_template false,
    or a tokenizer without a chat template): '{observation}' is replaced by its text."""
