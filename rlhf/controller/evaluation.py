"""Entry point behind `rlhf eval`: evaluate a Hugging Face model directory, or the policy of a
run's checkpoint, on held-out prompts; write `eval.json` and the inference-scaling curve.

1. Resolve the target: a run directory brings its recipe (`config.yaml`) and its checkpoint's
   actor, exported to a temporary model directory with `rlhf export`'s code (torch, DeepSpeed
   and LoRA checkpoints alike); a model directory takes a named recipe for data, rewards and
   sampling settings.
2. Load the prompts (`data.eval`, or `--data`; those longer than `data.max_prompt_tokens` are
   dropped and counted), the reward sources and the rollout engine.
3. Generate and judge greedy and sampled responses (:mod:`rlhf.eval.sampled`), seeded by
   `trainer.seed`; with search strategies, a reward model scores every sample.
4. Write `eval.json`, and with samples or the step beam `scaling.json` and `scaling.png`.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from rlhf.config.errors import ConfigError
from rlhf.config.schema import RecipeConfig
from rlhf.controller.export import export_run, pick_checkpoint
from rlhf.controller.preflight import load_checked_recipe
from rlhf.controller.setup import build_reward, pick_device, tokenize_prompts
from rlhf.workers.state import seed_everything
from rlhf.data.prompts import drop_long_prompts, load_rows
from rlhf.eval.outcomes import eval_metrics
from rlhf.eval.sampled import EvalPlan, collect_outcomes, eval_plan
from rlhf.eval.scaling import scaling_curve, write_scaling
from rlhf.eval.step_beam import BeamSettings
from rlhf.config.search_schema import SAMPLE_STRATEGIES, SEARCH_STRATEGIES
from rlhf.search.reward_model import SearchRewardModel


@dataclass
class EvalTarget:
    """What to evaluate and how."""

    config: RecipeConfig
    """The recipe: the run's own, or the named one with `model.path` set to the model."""
    model: str
    """The model directory (or hub name), or the run directory."""
    run_checkpoint: Path | None = None
    """The run checkpoint whose actor is evaluated (None: a model directory)."""
    data_from_argument: bool = False
    """The data came from `--data` (errors loading it then name that argument)."""


def resolve_target(model_or_run: str, recipe: str | Path | None, overrides: list[str], data: str | None, step: int | None) -> EvalTarget:
    """Step 1 of the module docstring; every mistake is a ConfigError naming the argument."""
    path = Path(model_or_run)
    # --data replaces the recipe's eval set, all of it: a size cap of the old set does not carry over
    extra = [*([f"data.eval.path={json.dumps(data)}", "data.eval.size=null"] if data else []), *overrides]
    if (path / "config.yaml").is_file():
        if recipe is not None:
            raise ConfigError(f"RECIPE: {str(path)!r} is a run directory and brings its own recipe (config.yaml); "
                              f"drop {str(recipe)!r} and override keys instead, e.g. rollout.temperature=0.6")
        checkpoint = pick_checkpoint(path, step, "rlhf eval")
        return EvalTarget(load_checked_recipe(path / "config.yaml", extra), str(path), checkpoint, bool(data))
    if step is not None:
        raise ConfigError(f"--step: {str(path)!r} is not a run directory (no config.yaml), so it has no checkpoints to choose from")
    if not ((path / "config.json").is_file() or _looks_like_hub_name(model_or_run)):
        raise ConfigError(f"MODEL_OR_RUN: {model_or_run!r} is neither a run directory (with config.yaml) nor a Hugging Face "
                          "model directory (with config.json) nor a hub model name")
    if recipe is None:
        raise ConfigError(f"RECIPE: {model_or_run!r} is a model, which says nothing of rewards or data; name a recipe "
                          "after it (a YAML path or a shipped recipe, e.g. `rlhf eval MODEL quickstart`)")
    config = load_checked_recipe(recipe, [*extra, "model.source=pretrained", f"model.path={json.dumps(model_or_run)}"])
    return EvalTarget(config, model_or_run, None, bool(data))


def _looks_like_hub_name(name: str) -> bool:
    """`org/model` that is no local path (a missing local directory is reported as missing)."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith(".") and not Path(parts[0]).exists()


def check_plan(config: RecipeConfig, ks: list[int] | None, num_samples: int | None, search: list[str] = (),
               reward_model: str | None = None, beams: Sequence[BeamSettings] = ()) -> EvalPlan:
    """The evaluation plan from `--k` / `--n` (default: `trainer.eval_k` / `trainer.eval_n`),
    `--search` / `--reward-model` and the step beam's settings from `--beam-*`, one per point
    of its line (:func:`rlhf.eval.step_beam.beam_line`)."""
    _check_search(search, reward_model, ks if ks is not None else config.trainer.eval_k)
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--n: samples per prompt must be >= 1, got {num_samples}")
    if num_samples and not (ks or config.trainer.eval_k):
        raise ConfigError(f"--n: {num_samples} samples per prompt are drawn only for pass@k / maj@k; name the k values with --k (e.g. --k 1,{num_samples})")
    effective = ks if ks is not None else config.trainer.eval_k
    # the recipe's trainer.eval_n goes with its own eval_k only
    n = num_samples or (config.trainer.eval_n if ks is None else 0) or max(effective, default=0)
    if effective and max(effective) > n:
        raise ConfigError(f"--k: k = {max(effective)} needs at least that many samples per prompt, but --n is {n}; raise --n or drop that k")
    return eval_plan(config, effective, n, search, beams)


def _check_search(search: list[str], reward_model: str | None, ks: list[int]) -> None:
    """Search strategies are known, scored by a reward model, and judged at some k."""
    unknown = [name for name in search if name not in SEARCH_STRATEGIES]
    if unknown:
        raise ConfigError(f"--search: unknown strategy {', '.join(map(repr, unknown))}; valid: {', '.join(SEARCH_STRATEGIES)}")
    if search and not reward_model:
        raise ConfigError(f"--search {','.join(search)}: the strategies select through a reward model; give its directory "
                          "with --reward-model DIR (an ORM or PRM that `rlhf rm` wrote)")
    sampled = [name for name in search if name in SAMPLE_STRATEGIES]
    if sampled and not ks:
        raise ConfigError(f"--search {','.join(sampled)}: the strategies are judged at k samples per prompt; name the k values "
                          "with --k (e.g. --k 1,4,16)")


def evaluate_target(target: EvalTarget, plan: EvalPlan, out_dir: Path, search_model: SearchRewardModel | None = None) -> dict:
    """Steps 2-4 of the module docstring; returns what `eval.json` holds. `search_model`
    scores the samples for `plan.search`."""
    config = target.config
    rows = eval_rows(target)
    reward = build_reward(config, set(rows[0]) - {"prompt", "ground_truth"})
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".policy-") as scratch:
            model_path = policy_path(target, Path(scratch))
            rollout, tokenizer = build_policy(config, model_path)
            rows, dropped = drop_long_prompts(rows, tokenizer, config.data, "data.eval")
            if config.env.type:  # a multi-turn recipe: one greedy episode per row
                return _episodes_report(target, rollout, tokenizer, reward, rows, dropped, out_dir)
            size = config.data.eval_batch_size
            prompts = [tokenize_prompts(config, tokenizer, rows[i : i + size]) for i in range(0, len(rows), size)]
            outcomes = collect_outcomes(rollout, reward, prompts, plan, search_model, tokenizer)
    finally:
        reward.close()
    report = {**eval_report(target, plan, outcomes.by_source(), eval_metrics(outcomes, plan.ks)), "dropped_prompts": dropped}
    if search_model is not None:
        report["search"] = {"strategies": list(plan.search), "reward_model": search_model.path, "type": search_model.type,
                            "aggregate": search_model.aggregate if search_model.type == "prm" else None}
        if plan.beams:  # one {beam_width, k, token_budget} per point of the step beam's line
            report["search"]["step_beam"] = [asdict(settings) for settings in plan.beams]
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    if plan.num_samples or plan.beams:
        write_scaling(scaling_curve(outcomes), out_dir, title=f"{Path(target.model).name}: inference scaling on {config.data.eval.path}")
    return report


def _episodes_report(target: EvalTarget, rollout, tokenizer, reward, rows: list[dict], dropped: int, out_dir: Path) -> dict:
    """`eval.json` of a multi-turn recipe: greedy episodes against its environment."""
    from types import SimpleNamespace

    from rlhf.controller.episodes import greedy_episodes
    from rlhf.envs.pool import build_env_pool

    config = target.config
    with build_env_pool(config.env) as pool:
        metrics = greedy_episodes(config, tokenizer, SimpleNamespace(rollout=rollout, reward=reward), pool, rows)
    dataset = config.data.eval
    report = {"model": target.model, "checkpoint": target.run_checkpoint.name if target.run_checkpoint else None,
              "data": {"path": dataset.path, "split": dataset.split, "size": dataset.size}, "num_episodes": len(rows),
              "env": config.env.type, "max_turns": config.env.max_turns, "seed": config.trainer.seed, "metrics": metrics,
              "dropped_prompts": dropped}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def eval_rows(target: EvalTarget) -> list[dict]:
    """The evaluation prompts of `data.eval` (set by `--data` or the recipe)."""
    dataset = target.config.data.eval
    if not dataset.path:
        raise ConfigError("--data: the recipe has no evaluation data (data.eval.path is empty); name it with --data PATH_OR_HUB")
    try:
        return load_rows(dataset, target.config.data.arithmetic, "data.eval", target.config.env.kwargs)
    except ConfigError as error:
        raise ConfigError(f"--data: {error}" if target.data_from_argument else str(error)) from None


def policy_path(target: EvalTarget, scratch: Path) -> str:
    """The model directory to load: the target itself, or its run checkpoint's actor exported
    into `scratch` (`rlhf export`'s code, so every kind of checkpoint works)."""
    if target.run_checkpoint is None:
        return target.model
    step = int(target.run_checkpoint.name.removeprefix("step_"))
    return str(export_run(target.model, scratch / "model", step))


def build_policy(config: RecipeConfig, model_path: str):
    """(rollout engine, tokenizer) of the model at `model_path` with the recipe's engine,
    dtypes (weights held in `model.param_dtype`, as the run held them), device and threads;
    seeds everything with `trainer.seed`."""
    import torch

    from rlhf.models.load import cast_parameters, load_causal_lm, load_tokenizer, param_dtype
    from rlhf.rollout.registry import build_rollout, rollout_engine

    trainer = config.trainer
    if trainer.num_threads > 0:
        torch.set_num_threads(trainer.num_threads)
    seed_everything(trainer.seed)
    tokenizer = load_tokenizer(model_path, config.model.trust_remote_code)
    needs_module = rollout_engine(config.rollout.engine).needs_module
    model = load_causal_lm(model_path, pick_device(trainer.device), config.model.trust_remote_code) if needs_module else None
    if model is not None:
        cast_parameters(model, param_dtype(config.model))
    return build_rollout(config, model, tokenizer, model_path), tokenizer


def eval_report(target: EvalTarget, plan: EvalPlan, groups: dict, metrics: dict[str, float]) -> dict:
    """`eval.json`: what was evaluated, on what, how, and the metrics."""
    dataset = target.config.data.eval
    return {
        "model": target.model,
        "checkpoint": target.run_checkpoint.name if target.run_checkpoint else None,
        "data": {"path": dataset.path, "split": dataset.split, "size": dataset.size},
        "num_prompts": sum(len(part.sources) for part in groups.values()),
        "prompts_per_source": {source: len(part.sources) for source, part in groups.items()},
        "samples_per_prompt": plan.num_samples,
        "k": list(plan.ks),
        "sampling": {"temperature": plan.sampling.temperature, "top_p": plan.sampling.top_p, "top_k": plan.sampling.top_k,
                     "max_new_tokens": plan.sampling.max_new_tokens},
        "seed": plan.seed,
        "metrics": metrics,
    }
