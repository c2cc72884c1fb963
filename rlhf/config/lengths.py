"""The longest sequences a recipe makes, single-turn or multi-turn.

A single-turn response has at most `rollout.max_new_tokens` tokens after a prompt of at most
`data.max_prompt_tokens`. A multi-turn episode (`env.type` set) is bounded as a whole by
`env.max_total_tokens`: prompt, actions and observations together.
"""

from __future__ import annotations

from rlhf.config.schema import RecipeConfig


def longest_sequence(cfg: RecipeConfig) -> int:
    """Tokens of the longest sequence the run generates and trains on."""
    if cfg.env.type:
        return cfg.env.max_total_tokens
    return cfg.data.max_prompt_tokens + cfg.rollout.max_new_tokens


def longest_response(cfg: RecipeConfig) -> int:
    """Tokens of the longest response (everything after the prompt); Dr. GRPO's constant
    normaliser (`seq-mean-token-sum-norm`) divides by it."""
    if cfg.env.type:
        return cfg.env.max_total_tokens
    return cfg.rollout.max_new_tokens
