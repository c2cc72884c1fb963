"""Checks of the `env` section and of the options a multi-turn run cannot honour.

Which `env.type` names exist is known to the environment registry, above the config; it is
checked by :mod:`rlhf.controller.preflight`. Here: the keys' ranges, how they fit the rest of
the recipe, and estimators that need (or refuse) turns.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rlhf.config.schema import RecipeConfig


def env_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Every problem of `cfg.env` and of options that do not fit it (see the module docstring)."""
    env = cfg.env
    turn_estimator = _needs_turns(cfg.algorithm.advantage)
    yield from _archer_errors(cfg)
    if not env.type:
        if turn_estimator:
            yield (f"algorithm.advantage: {cfg.algorithm.advantage!r} assigns credit to the turns of multi-turn episodes, "
                   "but this recipe is single-turn; set env.type (e.g. guess_number) or choose grpo, rloo, ...")
        return
    if env.type == "class":
        if not env.path or not env.name:
            yield "env.type: 'class' needs env.path (a Python file) and env.name (the class in it)"
        elif not Path(env.path).expanduser().is_file():
            yield f"env.path: {env.path!r} is not a file"
    elif env.path or env.name:
        yield f"env.path / env.name: only read with env.type 'class' (env.type is {env.type!r}); remove them"
    for key, value, minimum in (("env.max_turns", env.max_turns, 1), ("env.max_tokens_per_turn", env.max_tokens_per_turn, 1), ("env.workers", env.workers, 1)):
        if value < minimum:
            yield f"{key}: must be >= {minimum}, got {value}"
    if env.timeout_s <= 0:
        yield f"env.timeout_s: must be > 0, got {env.timeout_s}"
    if "{observation}" not in env.observation_template:
        yield f"env.observation_template: {env.observation_template!r} has no '{{observation}}' placeholder"
    first_turn = cfg.data.max_prompt_tokens + env.max_tokens_per_turn
    if env.max_total_tokens < first_turn:
        yield (f"env.max_total_tokens ({env.max_total_tokens}) is below data.max_prompt_tokens ({cfg.data.max_prompt_tokens}) + "
               f"env.max_tokens_per_turn ({env.max_tokens_per_turn}) = {first_turn}: the first action of a long prompt would not fit")
    yield from _unsupported_with_env(cfg)


def _unsupported_with_env(cfg: RecipeConfig) -> Iterable[str]:
    """Options of single-turn runs that a multi-turn run cannot honour, each named."""
    if cfg.data.dynamic_sampling.enabled:
        yield "data.dynamic_sampling.enabled: not available with env (episodes are not resampled); set it to false"
    if cfg.algorithm.advantage == "remax":
        yield "algorithm.advantage: remax needs a greedy single-turn response per prompt; with env choose grpo, rloo, reinforce_pp, turn_rloo or archer"
    if cfg.trainer.eval_k or cfg.trainer.eval_n:
        yield "trainer.eval_k / trainer.eval_n: pass@k and maj@k grade single responses; a multi-turn run evaluates by eval/success_rate, so remove them"
    process = [s.type for s in cfg.reward.sources if s.type == "prm"]
    if process:
        yield "reward.sources: a process reward model ('prm') scores steps of one response; with env, rewards come from the environment and final-answer sources"
    if cfg.model.source == "tiny" and cfg.model.tiny.max_position_embeddings < cfg.env.max_total_tokens:
        yield (f"env.max_total_tokens ({cfg.env.max_total_tokens}) exceeds model.tiny.max_position_embeddings "
               f"({cfg.model.tiny.max_position_embeddings}); raise the model's or lower the budget")


def _archer_errors(cfg: RecipeConfig) -> Iterable[str]:
    archer = cfg.algorithm.archer
    if not 0.0 <= archer.tau <= 1.0:
        yield f"algorithm.archer.tau: must be in [0, 1], got {archer.tau}"
    for key in ("buffer_size", "critic_batch_size"):
        if getattr(archer, key) < 1:
            yield f"algorithm.archer.{key}: must be >= 1, got {getattr(archer, key)}"
    if archer.critic_updates < 0 or archer.warmup_steps < 0:
        yield "algorithm.archer.critic_updates / warmup_steps: must be >= 0"
    if archer.critic_lr <= 0:
        yield f"algorithm.archer.critic_lr: must be > 0, got {archer.critic_lr}"
    if archer.backbone not in ("separate", "policy"):
        yield f"algorithm.archer.backbone: unknown value {archer.backbone!r} (valid values: separate, policy)"


def _needs_turns(advantage: str) -> bool:
    return _estimator_flag(advantage, "needs_turns")


def _estimator_flag(advantage: str, flag: str) -> bool:
    from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS

    estimator = ADVANTAGE_ESTIMATORS.get(advantage)
    return bool(estimator is not None and getattr(estimator, flag))
