"""Everything a run needs, built from a resolved recipe: output directory, model, data, roles.

This is the only place that turns recipe keys into objects; the loop itself reads no config
beyond what `Run` carries.
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhf.config.errors import ConfigError
from rlhf.config.loader import save_resolved
from rlhf.config.schema import RecipeConfig
from rlhf.controller.roles import Roles
from rlhf.data.batch import Batch
from rlhf.data.prompts import load_rows, prompt_batch
from rlhf.engines.base import OptimConfig
from rlhf.engines.torch_engine import TorchEngine
from rlhf.models.load import DTYPES, load_causal_lm, load_tokenizer, resolve_model_path
from rlhf.rewards.combine import RewardCombiner, WeightedSource
from rlhf.rewards.registry import build_reward_source
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.hf import HFRolloutEngine
from rlhf.workers.actor import ActorWorker, PolicyLossConfig
from rlhf.workers.ref import RefWorker


@dataclass
class Run:
    """A prepared run: the pieces the SFT stage and the RL loop operate on."""

    config: RecipeConfig
    output_dir: Path
    device: torch.device
    tokenizer: object
    model: torch.nn.Module
    rollout: HFRolloutEngine
    reward: RewardCombiner
    train_rows: list[dict]
    eval_prompts: list[Batch]

    def prompts(self, rows: list[dict]) -> Batch:
        """Tokenised, left-padded prompt batch for `rows`."""
        return tokenize_prompts(self.config, self.tokenizer, rows)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return autocast_dtype(self.config)


def tokenize_prompts(config: RecipeConfig, tokenizer, rows: list[dict]) -> Batch:
    data = config.data
    return prompt_batch(rows, tokenizer, chat_template=data.chat_template, system_prompt=data.system_prompt, max_prompt_tokens=data.max_prompt_tokens)


def autocast_dtype(config: RecipeConfig) -> torch.dtype | None:
    """The reduced compute dtype of `model.dtype`, or None for float32."""
    dtype = DTYPES[config.model.dtype]
    return None if dtype == torch.float32 else dtype


def prepare_output_dir(config: RecipeConfig, recipe_name: str) -> Path:
    """Create the run directory (refusing one that already holds a run) and save the config."""
    output_dir = Path(config.trainer.output_dir or f"runs/{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}")
    if (output_dir / "metrics.jsonl").exists():
        raise ConfigError(f"trainer.output_dir: {str(output_dir)!r} already holds a run (metrics.jsonl); choose another directory or remove it")
    output_dir.mkdir(parents=True, exist_ok=True)
    config.trainer.output_dir = str(output_dir)
    save_resolved(config, output_dir / "config.yaml")
    return output_dir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    # Subnormal floats are slow on CPUs and carry no useful signal in training.
    torch.set_flush_denormal(True)


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("trainer.device: 'cuda' was asked for but torch sees no CUDA device")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_run(config: RecipeConfig, recipe_name: str) -> Run:
    """Seed, create the output directory, load model and data, build reward and rollout."""
    trainer = config.trainer
    if trainer.num_threads > 0:
        torch.set_num_threads(trainer.num_threads)
    seed_everything(trainer.seed)
    output_dir = prepare_output_dir(config, recipe_name)
    device = pick_device(trainer.device)
    model_path = resolve_model_path(config.model, output_dir, trainer.seed)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    model = load_causal_lm(model_path, device, config.model.trust_remote_code)
    data = config.data
    train_rows = load_rows(data.train, data.arithmetic, "data.train")
    eval_rows = load_rows(data.eval, data.arithmetic, "data.eval") if data.eval.path else []
    rollout = HFRolloutEngine(model, tokenizer, micro_batch_size=config.rollout.micro_batch_size, autocast_dtype=autocast_dtype(config))
    eval_prompts = [tokenize_prompts(config, tokenizer, eval_rows[i : i + data.eval_batch_size]) for i in range(0, len(eval_rows), data.eval_batch_size)]
    return Run(config, output_dir, device, tokenizer, model, rollout, build_reward(config), train_rows, eval_prompts)


def build_reward(config: RecipeConfig) -> RewardCombiner:
    sources = []
    for index, source in enumerate(config.reward.sources):
        try:
            built = build_reward_source(source.type, dict(source.kwargs))
        except (KeyError, TypeError) as error:
            raise ConfigError(f"reward.sources.{index}: {error}") from None
        sources.append(WeightedSource(source.name or source.type, source.weight, built))
    return RewardCombiner(sources)


def build_roles(run: Run) -> Roles:
    """Actor (a fresh RL optimiser over the current model), the rollout engine sharing its
    weights in-process, the reward, and a frozen reference copy when a KL term is on."""
    config = run.config
    actor_cfg, kl = config.actor, config.algorithm.kl
    optim = OptimConfig(
        lr=actor_cfg.lr, betas=tuple(actor_cfg.betas), weight_decay=actor_cfg.weight_decay, warmup_steps=actor_cfg.warmup_steps,
        lr_schedule=actor_cfg.lr_schedule, total_steps=optimizer_steps(config), grad_clip=actor_cfg.grad_clip,
    )
    loss = PolicyLossConfig(
        ppo_epochs=actor_cfg.ppo_epochs, mini_batch_size=actor_cfg.mini_batch_size, micro_batch_size=actor_cfg.micro_batch_size,
        clip_low=actor_cfg.clip_low, clip_high=actor_cfg.clip_high, loss_agg=actor_cfg.loss_agg, entropy_coef=actor_cfg.entropy_coef,
        kl_coef=kl.coef if kl.placement == "loss" else 0.0, kl_kind=kl.kind, norm_length=config.rollout.max_new_tokens,
    )
    engine = TorchEngine(run.model, optim, autocast_dtype=run.autocast_dtype)
    actor = ActorWorker(engine, loss, temperature=config.rollout.temperature, seed=config.trainer.seed)
    ref = None
    if kl.coef > 0:
        ref_model = load_causal_lm(config.ref.path, run.device) if config.ref.path else copy.deepcopy(run.model)
        ref = RefWorker(ref_model, temperature=config.rollout.temperature, micro_batch_size=actor_cfg.micro_batch_size)
    return Roles(actor=actor, rollout=run.rollout, reward=run.reward, ref=ref)


def optimizer_steps(config: RecipeConfig) -> int:
    """Optimiser steps in the whole run (for the LR schedule)."""
    per_step = config.data.train_batch_size * config.rollout.n // config.actor.mini_batch_size
    return max(1, config.trainer.total_steps * per_step * config.actor.ppo_epochs)


def sampling_params(config: RecipeConfig) -> SamplingParams:
    rollout = config.rollout
    return SamplingParams(temperature=rollout.temperature, top_p=rollout.top_p, top_k=rollout.top_k, max_new_tokens=rollout.max_new_tokens)
