"""One RL iteration: the numbered steps every algorithm shares.

    (1) take prompts                   (5) token rewards, KL penalty, advantages
    (2) generate n responses each      (6) critic and policy updates
    (3) score them; the rollout        (7) wake the rollout engine, push the weights into it;
        engine sleeps                      move the anchor
    (4) old / reference logprobs,      (8) adapt the KL coefficient
        off-policy weights,
        critic values

Algorithm variants are choices of pure functions and flags inside these steps; steps (1)-(3)
are one call to the run's rollout source (:mod:`rlhf.rollout.source`).
"""

from __future__ import annotations

import time

import torch

from rlhf.algorithms.advantages import compute_advantages, whiten
from rlhf.algorithms.agreement import logprob_gap
from rlhf.algorithms.archer import critic_fit, utterance_advantages
from rlhf.algorithms.kl import kl_estimate
from rlhf.algorithms.off_policy import mismatch_kl, off_policy_weights, weight_stats
from rlhf.algorithms.token_rewards import outcome_token_rewards, turn_token_rewards
from rlhf.algorithms.turns import turn_baseline, turn_returns
from rlhf.controller.perf import device_count, throughput
from rlhf.config.training_schema import ActorConfig, OffPolicyConfig
from rlhf.controller.roles import Roles
from rlhf.controller.setup import Run
from rlhf.controller.sync_check import SyncChecker
from rlhf.data.batch import Batch, action_mask
from rlhf.rollout.source import RolloutSource
from rlhf.timing import PhaseTimer, phase_shares


def rl_step(run: Run, roles: Roles, source: RolloutSource, timer: PhaseTimer, step: int, sync_checker: SyncChecker | None = None) -> dict[str, float]:
    """Steps 1-8 of RL iteration `step` (1-based); returns the step's metrics. `sync_checker`
    verifies the weight sync of step 7 (see :mod:`rlhf.controller.sync_check`)."""
    config = run.config
    step_start = time.perf_counter()
    # 1-3. prompts, n responses each, scores (and DAPO filtering / the ReMax baseline)
    sampled = source.next_batch(roles, timer)
    batch = sampled.batch
    # the rollout engine's KV cache (and weights, where it can) make room for the trainer
    roles.rollout.sleep()
    # 4. old / reference logprobs, off-policy weights, values
    metrics = add_model_scores(run, roles, batch, timer)
    # 5. token rewards, the KL penalty, advantages
    with timer.phase("advantage"):
        kl_metrics = add_advantages(run, roles, batch)
    # 6. critic update; policy update unless a critic is still warming up
    if roles.critic is not None:
        with timer.phase("critic_update"):
            metrics.update(roles.critic.update_critic(batch))
    updated = (step > config.critic.warmup_rl_steps or roles.critic is None) and (
        step > config.algorithm.archer.warmup_steps or roles.utterance_critic is None)
    if updated:
        with timer.phase("update"):
            loss_coef = roles.kl_controller.value if config.algorithm.kl.placement == "loss" else 0.0
            metrics.update(roles.actor.update_policy(batch, kl_coef=loss_coef))
    # 7. wake the rollout engine, push the new weights (and check they arrived); move the anchor
    with timer.phase("weight_sync"):
        metrics.update(push_weights(roles, source, updated, sync_checker))
    if updated:
        move_anchor(run, roles, step)
    # 8. adapt the KL coefficient to the KL just measured
    if "kl/sequence_mean" in kl_metrics:
        roles.kl_controller.update(kl_metrics["kl/sequence_mean"], len(batch))
    kl_metrics["kl/coef"] = roles.kl_controller.value
    step_seconds = time.perf_counter() - step_start
    step_metrics = batch_metrics(batch, sampled.all_scores, step_seconds, device_count(config))
    step_metrics.update(phase_shares(timer.seconds, step_seconds))  # the timer holds this step's phases: the loop pops it
    rename_update_measurements(metrics, step_metrics)
    return {**step_metrics, **sampled.metrics, **kl_metrics, **metrics}


def add_model_scores(run: Run, roles: Roles, batch: Batch, timer: PhaseTimer) -> dict[str, float]:
    """Step 4: old logprobs (skipped for a single on-policy update, which reuses its own
    forward), off-policy weights, reference logprobs when a KL term is on, values when a critic
    is, and ArCHer's utterance critic; returns their metrics."""
    config = run.config
    if roles.ref is not None or not single_on_policy_update(config.actor, len(batch)):
        with timer.phase("old_logprobs"):
            batch.set("old_logprobs", roles.actor.compute_logprobs(batch))
    metrics: dict[str, float] = {}
    if config.actor.off_policy.correction != "none" and "old_logprobs" in batch:
        # weights for tokens the rollout engine's policy sampled (without an old-logprob pass
        # the update computes them from its own forward)
        metrics.update(add_off_policy_weights(config.actor.off_policy, batch))
    if roles.ref is not None:
        with timer.phase("ref_logprobs"):
            batch.set("ref_logprobs", roles.ref.compute_logprobs(batch))
    if roles.critic is not None:
        with timer.phase("values"):
            batch.set("values", roles.critic.compute_values(batch))
    if roles.utterance_critic is not None:
        with timer.phase("utterance_critic"):
            metrics.update(archer_critic_step(run, roles, batch))
    return metrics


def push_weights(roles: Roles, source: RolloutSource, updated: bool, sync_checker: SyncChecker | None) -> dict[str, float]:
    """Step 7: wake the rollout engine; the source's own engines (an asynchronous run's rollout
    side) take the new version, and after an update the roles' rollout engine takes the weights
    (checked by `sync_checker`); returns `sync/bytes` and the check's metrics."""
    roles.rollout.wake()
    pushed = source.after_step(roles, updated)
    if not updated:
        return {}
    metrics = {"sync/bytes": roles.sync_weights() + pushed}
    if sync_checker is not None:
        metrics.update(sync_checker.after_sync(roles.rollout, roles.actor))
    return metrics


def rename_update_measurements(metrics: dict[str, float], step_metrics: dict[str, float]) -> None:
    """What the update measured because no old-logprob pass ran, under the names the pass
    would have given it: the rollout engine's gap (`actor/rollout_*` -> `rollout/*`, unless
    the batch metrics have it) and the correction's weights (`actor/off_policy/*` -> `off_policy/*`)."""
    for name in ("logprob_diff", "kl_k3"):
        if f"actor/rollout_{name}" in metrics:
            step_metrics.setdefault(f"rollout/{name}", metrics.pop(f"actor/rollout_{name}"))
    for key in [key for key in metrics if key.startswith("actor/off_policy/")]:
        metrics[key.removeprefix("actor/")] = metrics.pop(key)


def archer_critic_step(run: Run, roles: Roles, batch: Batch) -> dict[str, float]:
    """ArCHer's high level (Zhou et al. 2024): this step's turns join the replay buffer, the
    utterance critic takes `algorithm.archer.critic_updates` TD steps on samples from it, and
    its advantage Q(s, a) - V(s) of each turn of the batch is set as `utterance_advantages
    [B, K]` (the critic is updated first, then judges the turns the policy will learn from).
    Metrics include how well Q, V and Q - V match the batch's Monte Carlo returns
    (:func:`rlhf.algorithms.archer.critic_fit`)."""
    archer = run.config.algorithm.archer
    critic = roles.utterance_critic
    critic.observe(batch)
    metrics = critic.update(archer.critic_updates, archer.critic_batch_size)
    q, v = critic.turn_values(batch)
    batch.set("utterance_advantages", utterance_advantages(q, v))
    # how much the critic knows: its Q and V against this batch's own Monte Carlo returns
    returns = turn_returns(batch["turn_rewards"], batch["turn_mask"], run.config.algorithm.turn_gamma)
    baseline = turn_baseline(returns, batch["turn_mask"], batch["group_index"])
    played = batch["turn_mask"].bool()
    fit = critic_fit(q[played], v[played], returns[played], (returns - baseline)[played])
    return {**metrics, **{f"archer/{key}": value.item() for key, value in fit.items()}}


def add_off_policy_weights(off_policy: OffPolicyConfig, batch: Batch) -> dict[str, float]:
    """Set `off_policy_weights [B, R]` of correction `actor.off_policy.correction` from the
    trainer's `old_logprobs` and the rollout engine's `rollout_logprobs`
    (:mod:`rlhf.algorithms.off_policy`); returns their `off_policy/*` statistics."""
    mask = action_mask(batch).float()
    weights = off_policy_weights(off_policy.correction, batch["old_logprobs"], batch["rollout_logprobs"], mask, off_policy.bounds())
    batch.set("off_policy_weights", weights)
    return {f"off_policy/{key}": value.item() for key, value in weight_stats(weights, mask).items()}


def single_on_policy_update(actor: ActorConfig, batch_size: int) -> bool:
    """True when the update takes exactly one optimiser step over the whole batch: then the
    old logprobs equal the update's own (detached) logprobs and need no separate forward."""
    return actor.ppo_epochs == 1 and actor.mini_batch_size >= batch_size


def add_advantages(run: Run, roles: Roles, batch: Batch) -> dict[str, float]:
    """Set `token_rewards`, `advantages` and `returns` on `batch`.

    The outcome score sits on each response's last token; with process reward sources, their
    refined step rewards sit on the step ends (`process_token_rewards`) and the outcome score is
    `outcome_scores`, while sequence-level estimators read `scores` = outcome + process return
    (see :mod:`rlhf.rewards.combine`). With `algorithm.kl.placement: reward`, β·KL_t is
    subtracted per token (and its sum from `scores`). Returns the mean sequence KL as a metric.
    """
    algorithm = run.config.algorithm
    mask = action_mask(batch).float()
    scores = batch["scores"]
    if "turn_rewards" in batch:  # multi-turn: each turn's reward on its action's last token
        token_rewards = turn_token_rewards(batch["turn_rewards"], batch["action_ends"], mask.shape[1])
    elif "process_token_rewards" in batch:
        token_rewards = outcome_token_rewards(batch["outcome_scores"], mask) + batch["process_token_rewards"] * mask
    else:
        token_rewards = outcome_token_rewards(scores, mask)
    metrics = {}
    if "ref_logprobs" in batch:
        kl = kl_estimate(batch["old_logprobs"], batch["ref_logprobs"], algorithm.kl.kind) * mask
        metrics["kl/sequence_mean"] = kl.sum(dim=-1).mean().item()
        if algorithm.kl.placement == "reward":
            beta = roles.kl_controller.value
            token_rewards = token_rewards - beta * kl
            scores = scores - beta * kl.sum(dim=-1)
    available = {
        "scores": scores, "group_index": batch["group_index"], "response_mask": mask, "token_rewards": token_rewards,
        "gamma": algorithm.gamma, "lam": algorithm.lam,
    }
    turn_keys = ("turn_rewards", "turn_mask", "turn_index", "utterance_advantages")
    available.update({key: batch[key] for key in ("values", "baseline_scores", *turn_keys) if key in batch})
    if "turn_rewards" in batch:
        available["turn_gamma"] = algorithm.turn_gamma
    advantages, returns = compute_advantages(algorithm.advantage, **available)
    if algorithm.whiten_advantages:
        advantages = whiten(advantages, mask) * mask
    batch.set("token_rewards", token_rewards).set("advantages", advantages).set("returns", returns)
    metrics["advantage/mean"] = (advantages * mask).sum().item() / max(1.0, mask.sum().item())
    return metrics


def move_anchor(run: Run, roles: Roles, step: int) -> None:
    """T1's dynamic anchor: copy the policy into the reference every `ref.anchor.every` steps,
    or track it by EMA every step (`ref.anchor.ema`)."""
    anchor = run.config.ref.anchor
    if roles.ref is None:
        return
    if anchor.every and step % anchor.every == 0:
        roles.follow_policy(ema=0.0)
    elif anchor.ema:
        roles.follow_policy(ema=anchor.ema)


def batch_metrics(batch: Batch, all_scores: torch.Tensor, step_seconds: float, devices: int = 1) -> dict[str, float]:
    """Reward (of every sample generated this step), length and throughput of one RL batch,
    and how far the rollout engine's logprobs are from the trainer's old ones (when both exist).
    `perf/throughput` is per device, as veRL defines it (:mod:`rlhf.controller.perf`)."""
    response_tokens = batch["response_mask"].sum()
    total_tokens = int(response_tokens + batch["prompt_mask"].sum())
    lengths = batch["response_mask"].sum(dim=-1).float()
    metrics = {}
    if "rollout_logprobs" in batch and "old_logprobs" in batch:
        mask = action_mask(batch)
        mean_gap, max_gap = logprob_gap(batch["rollout_logprobs"], batch["old_logprobs"], mask)
        metrics = {"rollout/logprob_diff": mean_gap.item(), "rollout/logprob_diff_max": max_gap.item(),
                   "rollout/kl_k3": mismatch_kl(batch["old_logprobs"], batch["rollout_logprobs"], mask.float()).item()}
    return {
        **metrics,
        "reward/mean": all_scores.mean().item(),
        "reward/std": all_scores.std().item() if len(all_scores) > 1 else 0.0,
        "response_length/mean": lengths.mean().item(),
        "response_length/max": lengths.max().item(),
        "time/step_s": step_seconds,
        "perf/tokens_per_s": total_tokens / step_seconds,
        "perf/throughput": throughput(total_tokens, step_seconds, devices),
        "perf/total_tokens": total_tokens,
    }
