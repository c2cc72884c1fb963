"""Registered reward sources: a recipe's `reward.sources[i].type` names one of these.

Each entry is a factory called with the source's `kwargs` from the recipe (`function` is the
exception: see `_function`).
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


def _gsm8k(timeout_s: float = 2.0, num_workers: int = 2) -> RewardSource:
    from rlhf.rewards.verifier_source import VerifierSource
    from rlhf.rewards.verifiers import gsm8k_score

    return VerifierSource(gsm8k_score, timeout_s=timeout_s, num_workers=num_workers)


def _math(timeout_s: float = 5.0, num_workers: int = 2) -> RewardSource:
    from rlhf.rewards.verifier_source import VerifierSource
    from rlhf.rewards.verifiers import math_score, warm_up_math_verify

    return VerifierSource(math_score, timeout_s=timeout_s, num_workers=num_workers, warmup=warm_up_math_verify)


def _format(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.format import FormatSource

    return FormatSource(**kwargs)


def _length(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.length import LengthPenaltySource

    return LengthPenaltySource(**kwargs)


def _orm(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.orm import OutcomeRewardModelSource

    return OutcomeRewardModelSource(**kwargs)


def _prm(**kwargs: Any) -> RewardSource:
    from rlhf.rewards.prm import ProcessRewardModelSource

    return ProcessRewardModelSource(**kwargs)


def _function(**options: Any) -> RewardSource:
    """Called with {path, function, batched, kwargs, on_error, extra_fields, timeout_s} assembled from the
    source's own keys by `rlhf.rewards.combine.build_source` (its `kwargs` go to the function)."""
    from rlhf.rewards.function import FunctionSource

    return FunctionSource(**options)


REWARD_SOURCES: dict[str, Callable[..., RewardSource]] = {
    "arithmetic": _arithmetic,
    "overlong": _overlong,
    "gsm8k": _gsm8k,
    "math": _math,
    "format": _format,
    "length": _length,
    "function": _function,
    "orm": _orm,
    "prm": _prm,
}
"""Source type -> factory(**kwargs)."""

MODEL_SOURCES = frozenset({"orm", "prm"})
"""Source types backed by a reward model, which the `reward_model` role serves: their factories
take `load_model` (False: the model is served by a worker group and attached later)."""


def build_reward_source(type_name: str, kwargs: dict[str, Any]) -> RewardSource:
    """Instantiate the source registered as `type_name`; an unknown name lists the valid ones."""
    try:
        factory = REWARD_SOURCES[type_name]
    except KeyError:
        raise KeyError(f"unknown reward source {type_name!r}; valid: {', '.join(sorted(REWARD_SOURCES))}") from None
    return factory(**kwargs)


def source_type_errors(types: list[str]) -> list[str]:
    """Messages for `reward.sources.<i>.type` values that name no registered source."""
    import difflib

    errors = []
    for index, name in enumerate(types):
        if name not in REWARD_SOURCES:
            close = difflib.get_close_matches(name, REWARD_SOURCES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            errors.append(f"reward.sources.{index}.type: unknown value {name!r} ({hint}valid values: {', '.join(REWARD_SOURCES)})")
    return errors
