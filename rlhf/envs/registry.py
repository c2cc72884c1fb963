"""Built-in environments by name (`env.type`); 'class' loads a user's class instead
(:mod:`rlhf.envs.user_class`).

Entries name their class as 'module:Class' and are imported on first use, so that a recipe
without `env` imports nothing of this package.
"""

from __future__ import annotations

import importlib

BUILTIN_ENVS = {
    "guess_number": "rlhf.envs.guess_number:GuessNumber",
    "twenty_questions": "rlhf.envs.twenty_questions:TwentyQuestions",
    "tool": "rlhf.envs.tool_env:ToolEnv",
}
"""env.type -> 'module:Class' of each built-in environment."""

USER_CLASS = "class"
"""env.type of a user's environment class (env.path, env.name)."""


def builtin_env_class(name: str) -> type:
    """The class of built-in environment `name` (KeyError for an unknown name)."""
    module, _, cls = BUILTIN_ENVS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def env_types() -> list[str]:
    """Every valid `env.type` (besides '' for single-turn runs)."""
    return [*BUILTIN_ENVS, USER_CLASS]
