"""Everything a run needs, built from a resolved recipe: output directory, model, data, roles.

This is the only place that turns recipe keys into objects; the loop itself reads no config
beyond what `Run` carries.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Optional

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig
from rlhf.controller.preflight import check_recipe, unreachable_models
from rlhf.controller.run_dir import prepare_output_dir
from rlhf.data.batch import Batch
from rlhf.data.prompts import drop_long_prompts, load_rows, prompt_batch
from rlhf.engines.registry import training_engine
from rlhf.models.load import autocast_dtype, load_causal_lm, load_tokenizer, resolve_model_path
from rlhf.rewards.combine import RewardCombiner, build_combiner
from rlhf.rewards.registry import MODEL_SOURCES
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.workers.state import seed_everything


@dataclass
class Run:
    """A prepared run: the pieces the SFT stage and the RL loop operate on."""

    config: RecipeConfig
    output_dir: Path
    device: torch.device
    tokenizer: object
    model: Optional[torch.nn.Module]
    """The policy in this process (None on the driver of a Ray run: the workers hold it)."""
    rollout: Optional[HFRolloutEngine]
    """HF generate over `model` (SFT validation; the RL rollout engine unless the recipe asks
    for vLLM or ZeRO-3 partitions `model`: see :func:`rlhf.controller.roles.build_models`)."""
    reward: Optional[RewardCombiner]
    train_rows: list[dict]
    eval_prompts: list[Batch]
    model_path: str = ""
    """The checkpoint the workers (and vLLM) load the policy from."""
    rank: int = 0
    """This process's data-parallel rank (a worker of a Ray group; 0 in a local run)."""
    data_stats: dict[str, float] = field(default_factory=dict)
    """Counts of the loaded data (`data/train_rows`, `data/train_dropped`, ...), logged at step 0."""
    eval_rows: list[dict] = field(default_factory=list)
    """The held-out rows (multi-turn runs evaluate by playing episodes from them)."""
    env_pool: object = None
    """Multi-turn runs: the environments (:func:`rlhf.controller.episodes.env_pool`), closed with the run."""

    def prompts(self, rows: list[dict]) -> Batch:
        """Tokenised, left-padded prompt batch for `rows`."""
        return tokenize_prompts(self.config, self.tokenizer, rows)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.config.model)


def tokenize_prompts(config: RecipeConfig, tokenizer, rows: list[dict]) -> Batch:
    data = config.data
    return prompt_batch(
        rows, tokenizer, chat_template=data.chat_template, system_prompt=data.system_prompt, template=data.prompt_template, max_prompt_tokens=data.max_prompt_tokens
    )




def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: 'cuda' was asked for but torch sees no CUDA device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_run(config: RecipeConfig, recipe_name: str) -> Run:
    """Seed, create the output directory, load model and data, build reward and rollout.

    With the Ray backend the workers load the model; this process loads it only for the SFT
    warm start (which then hands its weights to the workers through `model_path`)."""
    check_recipe(config)
    problems = unreachable_models(config)
    if problems:  # before the run directory exists: a failed start leaves nothing behind
        raise ConfigError("; ".join(problems))
    if config.distributed.backend == "local":
        training_engine(config.train.engine).check_environment()
    trainer = config.trainer
    if trainer.num_threads > 0:
        torch.set_num_threads(trainer.num_threads)
    seed_everything(trainer.seed)
    resolve_local_paths(config)
    # data and rewards first: a mistake there (a reward function that cannot be imported) then
    # stops the run before it creates an output directory or loads a model
    data = config.data
    train_rows = load_rows(data.train, data.arithmetic, "data.train", config.env.kwargs)
    eval_rows = load_rows(data.eval, data.arithmetic, "data.eval", config.env.kwargs) if data.eval.path else []
    reward = build_reward(config, row_fields(train_rows, eval_rows), load_models=config.distributed.backend != "ray")
    pool = None
    if config.env.type:  # a user's environment class is imported and checked now (exit 2)
        from rlhf.envs.pool import build_env_pool

        try:
            pool = build_env_pool(config.env)
            if config.sft.enabled and not pool.can_demonstrate:
                raise ConfigError(f"sft.enabled: the supervised warm start of a multi-turn run imitates the environment's own play, "
                                  f"but {pool.label} has no demo_action(rng) method; add one, or set sft.enabled=false")
        except BaseException:
            reward.close()
            if pool is not None:
                pool.close()
            raise
    new_directory = not (config.trainer.output_dir and Path(config.trainer.output_dir).exists())
    output_dir = None
    try:
        output_dir = prepare_output_dir(config, recipe_name).resolve()
        device = pick_device(trainer.device)
        model_path = resolve_model_path(config.model, output_dir, trainer.seed)
        tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
        train_rows, eval_rows, data_stats = fit_prompts(config, tokenizer, train_rows, eval_rows)
        model, rollout = None, None
        if config.distributed.backend == "local" or config.sft.enabled:
            model = load_causal_lm(model_path, device, config.model.trust_remote_code)
            rollout = HFRolloutEngine(model, tokenizer, micro_batch_size=config.rollout.micro_batch_size, autocast_dtype=autocast_dtype(config.model))
    except BaseException:
        reward.close()  # reward functions, verifiers and environments run in worker processes
        if pool is not None:
            pool.close()
        if new_directory and output_dir is not None:  # a start that failed leaves no directory behind
            shutil.rmtree(output_dir, ignore_errors=True)
        raise
    eval_prompts = [tokenize_prompts(config, tokenizer, eval_rows[i : i + data.eval_batch_size]) for i in range(0, len(eval_rows), data.eval_batch_size)]
    return Run(config, output_dir, device, tokenizer, model, rollout, reward, train_rows, eval_prompts, model_path, data_stats=data_stats, eval_rows=eval_rows, env_pool=pool)


def fit_prompts(config: RecipeConfig, tokenizer, train_rows: list[dict], eval_rows: list[dict]) -> tuple[list[dict], list[dict], dict[str, float]]:
    """Drop the prompts longer than `data.max_prompt_tokens` from both datasets, say how many
    were dropped, and return the kept rows with their counts."""
    stats = {}
    for name, rows in (("train", train_rows), ("eval", eval_rows)):
        if not rows:
            continue
        kept, dropped = drop_long_prompts(rows, tokenizer, config.data, f"data.{name}")
        stats.update({f"data/{name}_rows": len(kept), f"data/{name}_dropped": dropped})
        if dropped:
            print(f"data.{name}: dropped {dropped} of {len(rows)} prompts longer than data.max_prompt_tokens={config.data.max_prompt_tokens}", flush=True)
        train_rows, eval_rows = (kept, eval_rows) if name == "train" else (train_rows, kept)
    return train_rows, eval_rows, stats


def build_reward(config: RecipeConfig, extra_fields: Collection[str] | None = None, *, load_models: bool = True) -> RewardCombiner:
    """The recipe's reward sources; `extra_fields`: see `rlhf.rewards.combine.build_source`;
    without `load_models`, reward models are left to the `reward_model` worker group."""
    return build_combiner(config.reward, extra_fields, load_models=load_models)


def resolve_local_paths(config: RecipeConfig) -> None:
    """Make the recipe's local paths absolute, as this process sees them: Ray workers start in
    directories of their own (on other machines too), so a relative `model.path` or reward-model
    path would otherwise be looked up there. Hub names (no such local file) stay as they are."""
    def absolute(path: str, *, even_if_missing: bool = False) -> str:
        if not path or "://" in path or path.startswith("builtin:"):
            return path
        local = Path(path).expanduser()
        return str(local.resolve()) if local.exists() or even_if_missing else path

    config.model.path = absolute(config.model.path, even_if_missing=config.model.source == "tiny")
    config.ref.path, config.critic.path = absolute(config.ref.path), absolute(config.critic.path)
    config.data.train.path, config.data.eval.path = absolute(config.data.train.path), absolute(config.data.eval.path)
    if config.trainer.output_dir:
        config.trainer.output_dir = absolute(config.trainer.output_dir, even_if_missing=True)
    for source in config.reward.sources:
        if source.type in MODEL_SOURCES and isinstance(source.kwargs.get("path"), str):
            source.kwargs["path"] = absolute(source.kwargs["path"])


def row_fields(train_rows: list[dict], eval_rows: list[dict]) -> set[str]:
    """The row fields that every training and evaluation batch carries besides prompt and
    ground truth (what reward functions get as extra arguments)."""
    fields = set(train_rows[0])
    if eval_rows:
        fields &= set(eval_rows[0])
    return fields - {"prompt", "ground_truth"}


def sampling_params(config: RecipeConfig) -> SamplingParams:
    rollout = config.rollout
    return SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k, max_new_tokens=rollout.max_new_tokens, logprobs=rollout.logprobs)
