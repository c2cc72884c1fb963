"""Checks of a loaded recipe against the parts it names that live above the config: training and
rollout engines, reward sources and loggers, each asked through its own registry.

`rlhf.config` checks types, ranges and how keys fit together; it imports nothing above it.
What only the registries know (is `rollout.engine` a registered engine, can that engine run
with this layout, is `reward.sources.2.type` a source, is `trainer.loggers.1` a logger) is
checked here, once, by every command before it runs a recipe: errors are collected and raised
together as one ConfigError (exit status 2), like the config's own.

Whether the models a recipe names can be loaded from here (:func:`unreachable_models`) is
checked by `rlhf validate`, `rlhf doctor` and before a run creates its directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.loader import load_recipe
from rlhf.config.schema import RecipeConfig
from rlhf.config.validate import choice_error, uses_critic
from rlhf.config.validate_distributed import pool_size
from rlhf.engines.registry import TRAINING_ENGINES
from rlhf.envs.registry import env_types
from rlhf.logging.factory import LOGGERS
from rlhf.models.load import check_tiny_model_path
from rlhf.models.reachable import HUB_TIMEOUT_S, model_reachable
from rlhf.rewards.registry import MODEL_SOURCES, source_type_errors
from rlhf.rollout.registry import ROLLOUT_ENGINES
from rlhf.search.reward_model import read_reward_model_info


def recipe_errors(config: RecipeConfig) -> list[str]:
    """Every problem of `config` with the registered parts it names."""
    errors = [*_engine_errors(config), *source_type_errors([source.type for source in config.reward.sources]), *_logger_errors(config.trainer.loggers),
              _env_type_error(config.env.type), *async_machine_errors(config), _rollout_search_error(config)]
    return [error for error in errors if error]


def _rollout_search_error(config: RecipeConfig) -> str | None:
    """`rollout.search.reward_model` is a reward-model directory of the kind the strategy needs
    (read from its sidecar, before anything of the run is written)."""
    search = config.rollout.search
    if search.strategy == "none" or not search.reward_model:
        return None
    try:
        info = read_reward_model_info(search.reward_model, option="rollout.search.reward_model")
    except ConfigError as error:
        return str(error)
    if search.strategy == "step_beam" and info["type"] != "prm":
        return (f"rollout.search.strategy: step_beam scores partial solutions step by step and needs a PRM; "
                f"rollout.search.reward_model {search.reward_model!r} is an ORM (use it with best_of_n)")
    return None


def async_machine_errors(config: RecipeConfig) -> Iterable[str]:
    """What an asynchronous run needs of this machine and of its rollout engine: on the local
    backend a CPU for each side (else nothing can overlap) and CPU ids that exist (on Ray the
    rollout pool has devices of its own); an engine that can pause for partial rollouts."""
    if config.rollout.mode != "async":
        return
    settings = config.async_training
    if config.distributed.backend != "ray":
        yield from _local_async_errors(config)
    if settings.partial and config.rollout.engine in ROLLOUT_ENGINES and not ROLLOUT_ENGINES[config.rollout.engine].can_pause:
        pausing = ", ".join(name for name, spec in ROLLOUT_ENGINES.items() if spec.can_pause)
        yield (f"async_training.partial: pausing a generation for new weights needs a rollout.engine that can pause ({pausing}); "
               f"{config.rollout.engine!r} generates each call in one piece; set partial: false")


def _local_async_errors(config: RecipeConfig) -> Iterable[str]:
    """The rollout process and the trainer of a local asynchronous run each need CPUs of this machine."""
    settings = config.async_training
    usable = sorted(os.sched_getaffinity(0))
    if config.trainer.device == "cuda" or (config.trainer.device == "auto" and torch.cuda.is_available()):
        yield ("rollout.mode: async runs the rollout process and the trainer on CPU cores of their own; on a GPU machine it would "
               "share the one device with the trainer and has not been built for GPUs yet; use rollout.mode: sync, or trainer.device: cpu")
    elif len(usable) < 2:
        yield (f"rollout.mode: async needs 2 or more CPU cores (the rollout process and the trainer each need one, or nothing "
               f"overlaps), but this process may use {len(usable)}; use rollout.mode: sync")
    unknown = sorted(set(settings.rollout_cpus) - set(usable))
    if unknown:
        yield f"async_training.rollout_cpus: CPU ids {unknown} are not among those this process may use ({usable})"
    elif settings.rollout_cpus and not set(usable) - set(settings.rollout_cpus):
        yield f"async_training.rollout_cpus: {settings.rollout_cpus} leaves the trainer no CPU of {usable}; give the rollout process fewer"


def _env_type_error(env_type: str) -> str | None:
    return choice_error("env.type", env_type, env_types()) if env_type else None


def check_recipe(config: RecipeConfig) -> RecipeConfig:
    """`config`, or a ConfigError listing what :func:`recipe_errors` found."""
    errors = recipe_errors(config)
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def load_checked_recipe(path: str | Path | None, overrides: list[str] | None = None) -> RecipeConfig:
    """:func:`rlhf.config.loader.load_recipe`, then :func:`check_recipe`."""
    return check_recipe(load_recipe(path, overrides or []))


def _engine_errors(config: RecipeConfig) -> Iterable[str | None]:
    """The engines are registered, accept their settings, and fit the pools they run on."""
    train, rollout = config.train, config.rollout
    yield choice_error("train.engine", train.engine, TRAINING_ENGINES)
    yield choice_error("rollout.engine", rollout.engine, ROLLOUT_ENGINES)
    pools = config.resources.pools
    placed = all(config.resources.pool_of(role) in pools for role in ("actor", "rollout", "critic"))
    if train.engine in TRAINING_ENGINES:
        spec = TRAINING_ENGINES[train.engine]
        yield from spec.option_errors(train, config.model)
        for role in ("actor", "critic"):
            ranks = pool_size(config, config.resources.pool_of(role)) if placed else 1
            if ranks > 1 and not spec.data_parallel and (role == "actor" or uses_critic(config.algorithm.advantage)):
                yield (f"train.engine: {train.engine!r} trains in one process, but resources.pools.{config.resources.pool_of(role)} "
                       f"has {ranks} workers for the {role}; set train.engine=deepspeed (zero_stage 0-3) for data-parallel training")
    if rollout.engine in ROLLOUT_ENGINES:
        ranks = pool_size(config, config.resources.pool_of("rollout")) if placed else 1
        yield from ROLLOUT_ENGINES[rollout.engine].option_errors(config, ranks)


def _logger_errors(loggers: list[str]) -> Iterable[str | None]:
    for index, name in enumerate(loggers):
        yield choice_error(f"trainer.loggers.{index}", name, LOGGERS)
    if "jsonl" not in loggers:
        yield "trainer.loggers: must include jsonl (resume, `rlhf export` and `rlhf report` read metrics.jsonl), e.g. [console, jsonl, wandb]"


def recipe_models(config: RecipeConfig) -> list[tuple[str, str]]:
    """(recipe key, path) of every model a run of `config` loads by path: the policy (source
    pretrained), the reference (with a KL term), the critic (when the estimator needs one)
    and the reward models of orm/prm sources."""
    models = [("model.path", config.model.path)] if config.model.source == "pretrained" else []
    if config.ref.path and config.algorithm.kl.coef > 0:
        models.append(("ref.path", config.ref.path))
    if config.critic.path and uses_critic(config.algorithm.advantage):
        models.append(("critic.path", config.critic.path))
    for index, source in enumerate(config.reward.sources):
        path = source.kwargs.get("path") if source.type in MODEL_SOURCES else None
        if isinstance(path, str) and path:
            models.append((f"reward.sources.{index}.kwargs.path", path))
    return models


def unreachable_models(config: RecipeConfig, timeout_s: float = HUB_TIMEOUT_S) -> list[str]:
    """'key: detail' for every model of `config` that cannot be loaded here (see
    :func:`recipe_models`), and for a `model.path` that does not hold the tiny model of a
    `model.source: tiny` recipe; [] when every one can."""
    problems = []
    if config.model.source == "tiny" and config.model.path:
        try:
            check_tiny_model_path(config.model)
        except ConfigError as error:
            problems.append(str(error))
    for key, path in recipe_models(config):
        ok, detail = model_reachable(path, timeout_s=timeout_s)
        if not ok:
            problems.append(f"{key}: {detail}")
    return problems
