"""Registered reward sources: a recipe's `reward.sources[i].type` names one of these.

Each entry is a factory called with the source's `kwargs` from the recipe.
"""

from __future__ import annotations

from typing import Any, Callable

from rlhf.rewards.base import PerSampleRuleSource, RewardSource


def _arithmetic(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.arithmetic import arithmetic_score

    if kwargs:
        raise TypeError(f"the arithmetic reward takes no kwargs, got {sorted(kwargs)}")
    return PerSampleRuleSource(arithmetic_score)


def _overlong(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.length import OverlongPenaltySource

    return OverlongPenaltySource(**kwargs)


REWARD_SOURCES: dict[str, Callable[..., RewardSource]] = {
    "arithmetic": _arithmetic,
    "overlong": _overlong,
}
"""Source type -> factory(**kwargs)."""


def build_reward_source(type_name: str, kwargs: dict[str, Any]) -> RewardSource:
    """Instantiate the source registered as `type_name`; an unknown name lists the valid ones."""
    try:
        factory = REWARD_SOURCES[type_name]
    except KeyError:
        raise KeyError(f"unknown reward source {type_name!r}; valid: {', '.join(sorted(REWARD_SOURCES))}") from None
    return factory(**kwargs)
