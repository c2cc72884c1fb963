"""Multi-turn runs (`env.type` set): the rollout source, its environments, and held-out
evaluation by episodes.

The environments of a run live in one :class:`rlhf.envs.pool.EnvPool` (built once, closed with
the run): training batches and evaluations take turns on it, each starting fresh episodes.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

from rlhf.config.schema import RecipeConfig
from rlhf.controller.setup import Run, sampling_params
from rlhf.data.prompts import PromptStream
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.episodes import Limits, play_episodes
from rlhf.rollout.multi_turn import MultiTurnSource, eos_ids, episodes_batch, play_and_score
from rlhf.rollout.turn_format import TurnFormat
from rlhf.timing import PhaseTimer


def env_pool(run: Run):
    """The run's environments, built on first use."""
    if run.env_pool is None:
        from rlhf.envs.pool import build_env_pool

        run.env_pool = build_env_pool(run.config.env)
    return run.env_pool


def multi_turn_source(run: Run) -> MultiTurnSource:
    """`rollout.n` episodes per prompt row of the stream, actions sampled as `rollout.*` says."""
    config = run.config
    stream = PromptStream(run.train_rows, config.data.train_batch_size, config.trainer.seed)
    sampling = sampling_params(config)
    return MultiTurnSource(stream, env_pool(run), TurnFormat(run.tokenizer, config.data, config.env), n=config.rollout.n,
                           sampling=sampling, limits=Limits.of(config.env))


def evaluate_episodes(run: Run, roles) -> dict[str, float]:
    """Held-out evaluation of a multi-turn run (see :func:`greedy_episodes`). (The caller times
    the whole evaluation; its generate/env split is not reported.)"""
    return greedy_episodes(run.config, run.tokenizer, roles, env_pool(run), run.eval_rows)


def greedy_episodes(config: RecipeConfig, tokenizer, roles, pool, rows: list[dict]) -> dict[str, float]:
    """One greedy episode per row, `data.eval_batch_size` at a time, with `roles.rollout` and
    `roles.reward` (final answers): `eval/success_rate` (when the environment reports
    success), `eval/turns_mean`, `eval/return_mean`, `eval/truncated_rate`."""
    limits = Limits.of(config.env)
    greedy = SamplingParams(max_new_tokens=limits.max_tokens_per_turn, greedy=True)
    turn_format = TurnFormat(tokenizer, config.data, config.env)
    batch_size = config.data.eval_batch_size
    totals: dict[str, float] = {}
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        _, metrics = play_and_score(chunk, roles, pool, turn_format, greedy, limits, PhaseTimer())
        for key in ("env/success_rate", "env/turns_mean", "env/return_mean", "env/truncated_rate"):
            if key in metrics:
                totals[key] = totals.get(key, 0.0) + metrics[key] * len(chunk)
    return {"eval/" + key.removeprefix("env/"): value / len(rows) for key, value in totals.items()}


def demo_batch(run: Run, rows: list[dict], rng: random.Random):
    """One episode per row played by the environment's own demonstrator (legal, not optimal
    play), as a Batch whose `action_mask` marks the demonstrated actions: the supervised warm
    start of a multi-turn run imitates it."""
    tokenizer = run.tokenizer
    pool = env_pool(run)
    eos = eos_ids(tokenizer)

    def choose(contexts: dict[int, list[int]], budget: int) -> dict[int, tuple[list[int], None]]:
        actions = pool.demo_actions(list(contexts), rng)
        return {i: ((tokenizer(actions[i], add_special_tokens=False)["input_ids"] + eos)[:budget], None) for i in contexts}

    turn_format = TurnFormat(tokenizer, run.config.data, run.config.env)
    episodes = play_episodes(rows, pool, choose, turn_format, Limits.of(run.config.env), eos)
    return episodes_batch(episodes, rows, tokenizer.pad_token_id)


def greedy_success_rate(run: Run, rollout, judge, rows: list[dict]) -> float:
    """Success rate of one greedy episode per row (SFT validation of a multi-turn run)."""
    metrics = greedy_episodes(run.config, run.tokenizer, SimpleNamespace(rollout=rollout, reward=judge), env_pool(run), rows)
    return metrics.get("eval/success_rate", 0.0)
