"""Value checks of a whole recipe, run by the loader once every field has the right type.

Every message names the full key and the bad value. All problems are collected and raised
together in one :class:`ConfigError` (joined by '; ', which no single message contains), so
one run lists everything to fix.

The names of the pure-math parts (advantage estimators, policy losses, loss aggregations, KL
estimators, refinements) come from their registries in :mod:`rlhf.algorithms`, the layer the
config shares, imported lazily inside :func:`_registry_errors`: importing the config package
stays cheap, and a newly registered name is valid without editing this file. Names of parts
that live above the config (engines, reward sources, loggers) are checked with those parts,
by :mod:`rlhf.controller.preflight`, before any command runs a recipe.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from rlhf.config.choices import choice_error
from rlhf.config.search_schema import ROLLOUT_STRATEGIES, SEARCH_STRATEGIES, STEP_AGGREGATES, beam_width_problem
from rlhf.config.errors import ConfigError
from rlhf.config.lengths import longest_sequence
from rlhf.config.schema import RecipeConfig, RewardSourceConfig
from rlhf.config.validate_async import async_errors, off_policy_errors
from rlhf.config.validate_distributed import distributed_errors
from rlhf.config.validate_env import env_errors

Rule = tuple[str, str, Callable[[Any], bool]]


def _optimization_ranges(section: str) -> tuple[Rule, ...]:
    """Rules of the optimiser keys the actor and the critic share (OptimizationConfig)."""
    return (
        (f"{section}.lr", "> 0", lambda v: v > 0),
        (f"{section}.weight_decay", ">= 0", lambda v: v >= 0),
        (f"{section}.betas", "two values in [0, 1)", lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)),
        (f"{section}.warmup_steps", ">= 0", lambda v: v >= 0),
        (f"{section}.grad_clip", ">= 0", lambda v: v >= 0),
        (f"{section}.ppo_epochs", ">= 1", lambda v: v >= 1),
        (f"{section}.mini_batch_size", ">= 1", lambda v: v >= 1),
        (f"{section}.micro_batch_size", ">= 1", lambda v: v >= 1),
    )


_RANGES: tuple[Rule, ...] = (
    # (key, "must be ...", check)
    ("model.tiny.hidden_size", ">= 1", lambda v: v >= 1),
    ("model.tiny.num_layers", ">= 1", lambda v: v >= 1),
    ("model.tiny.num_heads", ">= 1", lambda v: v >= 1),
    ("model.tiny.intermediate_size", ">= 1", lambda v: v >= 1),
    ("model.tiny.max_position_embeddings", ">= 1", lambda v: v >= 1),
    ("model.lora.rank", ">= 0 (0: LoRA off)", lambda v: v >= 0),
    ("model.lora.alpha", "> 0", lambda v: v > 0),
    ("model.lora.dropout", "in [0, 1)", lambda v: 0 <= v < 1),
    ("model.lora.target_modules", "a non-empty list of layer names", lambda v: len(v) > 0),
    ("data.train.size", ">= 1 (or null)", lambda v: v is None or v >= 1),
    ("data.eval.size", ">= 1 (or null)", lambda v: v is None or v >= 1),
    ("data.train_batch_size", ">= 1", lambda v: v >= 1),
    ("trainer.save_every", ">= 0", lambda v: v >= 0),
    ("trainer.keep_last", ">= 1", lambda v: v >= 1),
    ("trainer.max_nonfinite_steps", ">= 0 (0: never stop)", lambda v: v >= 0),
    ("data.eval_batch_size", ">= 1", lambda v: v >= 1),
    ("data.max_prompt_tokens", ">= 1", lambda v: v >= 1),
    ("data.prompt_template", "null or a text containing '{prompt}'", lambda v: v is None or "{prompt}" in v),
    ("data.arithmetic.digits", ">= 1", lambda v: v >= 1),
    ("data.arithmetic.test_fraction", "in [0, 1)", lambda v: 0 <= v < 1),
    ("rollout.n", ">= 1", lambda v: v >= 1),
    ("rollout.temperature", "> 0", lambda v: v > 0),
    ("rollout.top_p", "in (0, 1]", lambda v: 0 < v <= 1),
    ("rollout.top_k", ">= 0", lambda v: v >= 0),
    ("rollout.max_new_tokens", ">= 1", lambda v: v >= 1),
    ("rollout.micro_batch_size", ">= 0", lambda v: v >= 0),
    ("rollout.timeout_s", "> 0 (seconds)", lambda v: v > 0),
    *_optimization_ranges("actor"),
    ("actor.clip_low", ">= 0", lambda v: v >= 0),
    ("actor.clip_high", ">= 0", lambda v: v >= 0),
    ("actor.dual_clip", "> 1 (or null)", lambda v: v is None or v > 1),
    ("actor.entropy_coef", ">= 0", lambda v: v >= 0),
    ("critic.hl_gauss.num_bins", ">= 2", lambda v: v >= 2),
    ("critic.hl_gauss.sigma_ratio", "> 0", lambda v: v > 0),
    ("critic.value_clip", "> 0 (or null)", lambda v: v is None or v > 0),
    *_optimization_ranges("critic"),
    ("critic.warmup_rl_steps", ">= 0", lambda v: v >= 0),
    ("ref.anchor.every", ">= 0", lambda v: v >= 0),
    ("ref.anchor.ema", "in [0, 1)", lambda v: 0 <= v < 1),
    ("algorithm.gamma", "in [0, 1]", lambda v: 0 <= v <= 1),
    ("algorithm.lam", "in [0, 1]", lambda v: 0 <= v <= 1),
    ("algorithm.kl.coef", ">= 0", lambda v: v >= 0),
    ("algorithm.kl.target", "> 0", lambda v: v > 0),
    ("algorithm.kl.horizon", ">= 1", lambda v: v >= 1),
    ("data.dynamic_sampling.max_extra_rounds", ">= 0", lambda v: v >= 0),
    ("sft.lr", "> 0", lambda v: v > 0),
    ("sft.batch_size", ">= 1", lambda v: v >= 1),
    ("sft.max_steps", ">= 0", lambda v: v >= 0),
    ("sft.eval_every", ">= 1", lambda v: v >= 1),
    ("sft.stop_at_accuracy", "in [0, 1]", lambda v: 0 <= v <= 1),
    ("sft.val_size", ">= 1", lambda v: v >= 1),
    ("train.zero_stage", "in 0..3", lambda v: 0 <= v <= 3),
    ("train.max_tokens_per_micro_batch", ">= 0 (0: off)", lambda v: v >= 0),
    ("sync.check_every", ">= 0", lambda v: v >= 0),
    ("sync.tolerance", "> 0 (or null)", lambda v: v is None or v > 0),
    ("sync.probe_size", ">= 1", lambda v: v >= 1),
    ("trainer.total_steps", ">= 0", lambda v: v >= 0),
    ("trainer.eval_every", ">= 0", lambda v: v >= 0),
    ("trainer.eval_k", "a list of integers >= 1", lambda v: all(k >= 1 for k in v)),
    ("trainer.eval_n", ">= 0", lambda v: v >= 0),
    ("trainer.log_every", ">= 1", lambda v: v >= 1),
    ("trainer.num_threads", ">= 0", lambda v: v >= 0),
    ("trainer.sample_every", ">= 0", lambda v: v >= 0),
    ("trainer.num_samples", ">= 1", lambda v: v >= 1),
    ("eval.search.beam_k", ">= 1", lambda v: v >= 1),
    ("eval.search.beam_budget", ">= 0 (0: beam_width x beam_k x rollout.max_new_tokens)", lambda v: v >= 0),
    ("rollout.search.n", ">= 1", lambda v: v >= 1),
    ("rollout.search.beam_width", ">= 1", lambda v: v >= 1),
    ("rollout.search.beam_k", ">= 1", lambda v: v >= 1),
    ("rollout.search.beam_budget", ">= 0 (0: beam_width x beam_k x rollout.max_new_tokens)", lambda v: v >= 0),
    ("reward.process.alpha", ">= 0", lambda v: v >= 0),
    ("reward.process.eta", "a finite number", math.isfinite),
)
"""Simple range rules: each key's value must pass its check."""

_CHOICES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("model.source", ("pretrained", "tiny")),
    ("model.dtype", ("float32", "bfloat16")),
    ("model.param_dtype", ("float32", "bfloat16")),
    ("distributed.backend", ("local", "ray")),
    ("actor.lr_schedule", ("constant", "cosine")),
    ("critic.lr_schedule", ("constant", "cosine")),
    ("critic.loss", ("mse", "hl_gauss")),
    ("algorithm.kl.placement", ("loss", "reward")),
    ("trainer.device", ("auto", "cpu", "cuda")),
    ("reward.on_error", ("raise", "zero")),
    ("data.train.answer_extractor", ("none", "gsm8k", "boxed")),
    ("data.eval.answer_extractor", ("none", "gsm8k", "boxed")),
    ("eval.search.aggregate", STEP_AGGREGATES),
    ("rollout.search.strategy", ROLLOUT_STRATEGIES),
    ("rollout.search.aggregate", STEP_AGGREGATES),
)
"""Keys with a fixed set of values (registry-backed names are in _registry_errors)."""


def validate(cfg: RecipeConfig) -> None:
    """Raise a ConfigError listing every invalid value and inconsistent setting of ``cfg``."""
    errors = [
        *_range_errors(cfg),
        *(choice_error(key, _get(cfg, key), valid) for key, valid in _CHOICES),
        *_registry_errors(cfg),
        *_batch_errors(cfg),
        *_model_errors(cfg),
        *_precision_errors(cfg),
        *_reward_errors(cfg),
        *_algorithm_errors(cfg),
        *_eval_errors(cfg),
        *distributed_errors(cfg, uses_critic(cfg.algorithm.advantage)),
        *env_errors(cfg),
        *off_policy_errors(cfg),
        *async_errors(cfg),
    ]
    errors = [error for error in errors if error]
    if errors:
        raise ConfigError("; ".join(errors))


def _get(cfg: RecipeConfig, key: str) -> Any:
    """The value at dotted ``key`` ('actor.lr')."""
    return functools.reduce(getattr, key.split("."), cfg)


def _range_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Messages for the values that break a rule of ``_RANGES``."""
    for key, requirement, check in _RANGES:
        value = _get(cfg, key)
        if not check(value):
            yield f"{key}: must be {requirement}, got {value!r}"


def _registry_errors(cfg: RecipeConfig) -> Iterable[str | None]:
    """Names that must be registered by the module owning that family of parts."""
    from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS
    from rlhf.algorithms.kl import KL_ESTIMATORS
    from rlhf.algorithms.losses import LOSS_AGG_MODES, POLICY_LOSSES
    from rlhf.algorithms.refinement import REFINEMENTS

    yield choice_error("algorithm.advantage", cfg.algorithm.advantage, ADVANTAGE_ESTIMATORS)
    yield choice_error("actor.loss_agg", cfg.actor.loss_agg, LOSS_AGG_MODES)
    yield choice_error("actor.policy_loss", cfg.actor.policy_loss, POLICY_LOSSES)
    yield choice_error("algorithm.kl.kind", cfg.algorithm.kl.kind, KL_ESTIMATORS)
    yield choice_error("reward.process.refine", cfg.reward.process.refine, REFINEMENTS)


def _batch_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Each RL batch splits into whole mini-batches, and each mini-batch into micro-batches.

    Skipped where a size is already out of range (reported by _range_errors).
    """
    prompts, n = cfg.data.train_batch_size, cfg.rollout.n
    mini, micro = cfg.actor.mini_batch_size, cfg.actor.micro_batch_size
    if min(prompts, n, mini) >= 1 and (prompts * n) % mini:
        yield (f"data.train_batch_size ({prompts}) * rollout.n ({n}) = {prompts * n} sequences "
               f"per step is not divisible by actor.mini_batch_size ({mini})")
    if min(mini, micro) >= 1 and mini % micro:
        yield (f"actor.mini_batch_size ({mini}) is not divisible by "
               f"actor.micro_batch_size ({micro})")


def _algorithm_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Settings that only make sense together: an anchor needs a reference, dynamic sampling
    needs groups, the critic's batches must divide the RL batch, HL-Gauss needs a range."""
    anchor, kl = cfg.ref.anchor, cfg.algorithm.kl
    if (anchor.every or anchor.ema) and kl.coef == 0:
        yield ("ref.anchor: a dynamic anchor moves the reference model, which exists only with a "
               "KL term; set algorithm.kl.coef > 0 or remove ref.anchor")
    if anchor.every and anchor.ema:
        yield (f"ref.anchor.every ({anchor.every}) and ref.anchor.ema ({anchor.ema}) are both set; "
               "choose a periodic copy or an EMA, not both")
    if cfg.data.dynamic_sampling.enabled and cfg.rollout.n < 2:
        yield ("data.dynamic_sampling.enabled: needs rollout.n >= 2 (a group of one sample "
               f"always has equal rewards), got rollout.n={cfg.rollout.n}")
    critic, hl = cfg.critic, cfg.critic.hl_gauss
    sequences = cfg.data.train_batch_size * cfg.rollout.n
    if uses_critic(cfg.algorithm.advantage) and min(critic.mini_batch_size, critic.micro_batch_size) >= 1:
        if sequences % critic.mini_batch_size:
            yield (f"data.train_batch_size ({cfg.data.train_batch_size}) * rollout.n ({cfg.rollout.n}) = {sequences} sequences per step is not "
                   f"divisible by critic.mini_batch_size ({critic.mini_batch_size})")
        if critic.mini_batch_size % critic.micro_batch_size:
            yield (f"critic.mini_batch_size ({critic.mini_batch_size}) is not divisible by "
                   f"critic.micro_batch_size ({critic.micro_batch_size})")
    if hl.v_min >= hl.v_max:
        yield f"critic.hl_gauss: v_min ({hl.v_min}) must be below v_max ({hl.v_max})"


def _eval_errors(cfg: RecipeConfig) -> Iterable[str]:
    """pass@k and maj@k at evaluations need n >= k samples per prompt; search strategies are
    known ones, with a reward model; the step beam's widths are whole numbers >= 1."""
    trainer = cfg.trainer
    if trainer.eval_n and not trainer.eval_k:
        yield f"trainer.eval_n: {trainer.eval_n} samples per prompt are drawn only for pass@k / maj@k; set trainer.eval_k too (e.g. [1, {trainer.eval_n}])"
    elif trainer.eval_n and trainer.eval_k and max(trainer.eval_k) > trainer.eval_n:
        yield f"trainer.eval_k: k = {max(trainer.eval_k)} needs at least that many samples per prompt, but trainer.eval_n is {trainer.eval_n}"
    search = cfg.eval.search
    for name in search.strategies:
        if (error := choice_error("eval.search.strategies", name, SEARCH_STRATEGIES)) is not None:
            yield error
    if search.strategies and not search.reward_model:
        yield (f"eval.search.reward_model: the strategies {', '.join(search.strategies)} select through a reward model; "
               "give the ORM or PRM directory that `rlhf rm` wrote (OUTPUT_DIR/model)")
    if (problem := beam_width_problem(search.beam_width)) is not None:
        yield f"eval.search.beam_width: {problem}"
    yield from _rollout_search_errors(cfg)


def _rollout_search_errors(cfg: RecipeConfig) -> Iterable[str]:
    """Training on searched responses needs a reward model and the synchronous single-turn
    loop on the local backend, and leaves nothing for an importance-sampling correction."""
    strategy = cfg.rollout.search.strategy
    if strategy == "none":
        return
    key = f"rollout.search.strategy: {strategy}"
    if not cfg.rollout.search.reward_model:
        yield f"rollout.search.reward_model: {strategy} picks responses through a reward model; give the ORM or PRM directory that `rlhf rm` wrote"
    if cfg.rollout.mode != "sync":
        yield f"{key} searches in the synchronous loop; rollout.mode is {cfg.rollout.mode!r} (set rollout.mode=sync or rollout.search.strategy=none)"
    if cfg.env.type:
        yield f"{key} picks single-turn responses; env.type {cfg.env.type!r} plays episodes (multi-turn search is not built)"
    if cfg.distributed.backend != "local":
        yield f"{key} runs its reward model in the driver of the local backend; distributed.backend is {cfg.distributed.backend!r}"
    if cfg.actor.off_policy.correction != "none":
        yield (f"{key}: a searched response is chosen for its score, a bias no importance weight of the sampling policy corrects; "
               f"set actor.off_policy.correction=none (it is {cfg.actor.off_policy.correction!r})")


def uses_critic(advantage: str) -> bool:
    """True when the advantage estimator named `advantage` needs a critic's values."""
    from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS

    return advantage in ADVANTAGE_ESTIMATORS and ADVANTAGE_ESTIMATORS[advantage].needs_critic


def _model_errors(cfg: RecipeConfig) -> Iterable[str]:
    """A pretrained model needs a path; a tiny model needs a consistent shape."""
    model, tiny = cfg.model, cfg.model.tiny
    if model.source == "pretrained" and not model.path.strip():
        yield ("model.path: must name a local directory or hub model when model.source is "
               "'pretrained' (or set model.source=tiny)")
    if model.source != "tiny":
        return
    if min(tiny.hidden_size, tiny.num_heads) >= 1 and tiny.hidden_size % tiny.num_heads:
        yield (f"model.tiny.hidden_size ({tiny.hidden_size}) is not divisible by "
               f"model.tiny.num_heads ({tiny.num_heads})")
    longest = longest_sequence(cfg)
    if longest > tiny.max_position_embeddings and not cfg.env.type:  # an episode's budget: see validate_env
        yield (f"data.max_prompt_tokens ({cfg.data.max_prompt_tokens}) + rollout.max_new_tokens "
               f"({cfg.rollout.max_new_tokens}) = {longest} exceeds "
               f"model.tiny.max_position_embeddings ({tiny.max_position_embeddings})")


def _precision_errors(cfg: RecipeConfig) -> Iterable[str]:
    """bfloat16 weights compute in bfloat16: float32 compute over them is a contradiction."""
    model = cfg.model
    if model.param_dtype == "bfloat16" and model.dtype == "float32":
        yield ("model.param_dtype: 'bfloat16' holds the policy's weights and activations in bfloat16, so its forward and "
               "backward run in bfloat16, but model.dtype is 'float32' (float32 compute); set model.dtype=bfloat16 as well "
               "(bfloat16 weights, float32 master weights and AdamW state in the optimiser), or model.param_dtype=float32 "
               "(float32 weights; model.dtype=bfloat16 then autocasts the compute alone)")


def _reward_errors(cfg: RecipeConfig) -> Iterable[str]:
    """At least one reward source, with distinct metric names; function sources name a file
    or module and a function, other sources neither."""
    sources = cfg.reward.sources
    if not sources:
        yield "reward.sources: must list at least one reward source (e.g. [{type: arithmetic}])"
    seen: dict[str, int] = {}
    for i, source in enumerate(sources):
        label = source.name or source.type
        if label in seen:
            yield (f"reward.sources.{seen[label]} and reward.sources.{i} are both named "
                   f"{label!r} in metrics; give one of them a distinct reward.sources.{i}.name")
        seen.setdefault(label, i)
        yield from _function_source_errors(source, f"reward.sources.{i}")


def _function_source_errors(source: RewardSourceConfig, key: str) -> Iterable[str]:
    """`path`, `name` and `timeout_s` of a `type: function` source; `path`, `batched` and
    `timeout_s` belong to it alone."""
    if source.type != "function":
        for option in ("path", "batched", "timeout_s"):
            if getattr(source, option) != getattr(RewardSourceConfig, option):
                yield f"{key}.{option}: only 'function' sources take {option}, this one has type {source.type!r}"
        return
    if source.timeout_s <= 0:
        yield f"{key}.timeout_s: must be > 0 (seconds one call may take), got {source.timeout_s!r}"
    if not source.path.strip():
        yield (f"{key}.path: a function source needs the .py file (relative to the recipe) or the "
               "dotted module that defines the function, e.g. path: my_rewards.py")
    elif not (is_python_file(source.path) or _DOTTED.fullmatch(source.path)):
        yield f"{key}.path: {source.path!r} is neither a .py file nor a dotted module name (my_pkg.rewards)"
    if not (source.name or "").isidentifier():
        yield (f"{key}.name: a function source needs the name of the function to call, "
               f"e.g. name: score (got {source.name!r})")


_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
"""A module name like `my_pkg.rewards`."""


def is_python_file(path: str) -> bool:
    """True when a function source's `path` names a file (it ends in .py or has a directory
    part) rather than a dotted module."""
    return path.endswith(".py") or "/" in path or "\\" in path
