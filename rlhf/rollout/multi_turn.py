"""The multi-turn rollout source: each RL step plays `rollout.n` episodes per prompt row
against the recipe's environment (:mod:`rlhf.rollout.episodes`) and yields them as one Batch.

One trajectory is one row (B trajectories, P prompt tokens, R response tokens, K turns):

    prompt_ids, prompt_mask [B, P]      the first context (prompt and first observation)
    response_ids, response_mask [B, R]  actions and observations interleaved (attention mask)
    action_mask [B, R]                  1 exactly on the tokens the policy generated
    turn_index [B, R]                   k on the tokens of action k, -1 elsewhere
    action_starts, action_ends [B, K]   response columns of action k: [start, end); -1 past the end
    turn_rewards, turn_mask [B, K]      reward of each turn; 1 on the turns played
    num_turns [B], scores [B]           turns played; the return (sum of turn rewards)
    rollout_logprobs [B, R]             the engine's logprobs of the action tokens (0 elsewhere)

and per row `group_index`, `truncated`, `success`, `conversation`, `episode_answer` (the
final answer to grade, or None), `episode_tool_calls`, and the dataset row's fields. When an
environment ends an episode with `info["answer"]`, the recipe's reward sources score that
answer and the score joins the last turn's reward (how the `tool` environment's final answers
are graded by `gsm8k`, `math` or a reward function).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from rlhf.data.batch import Batch
from rlhf.data.prompts import PromptStream, sequence_tensor
from rlhf.rewards.base import CORRECT_AT
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.episodes import Chooser, Episode, Limits, play_episodes
from rlhf.rollout.source import SOURCE_SCORES, PromptGroups, Sampled
from rlhf.rollout.turn_format import TurnFormat

class MultiTurnSource:
    """Scored multi-turn batches from prompt rows (see the module docstring).

    Args:
        stream: batches of `data.train_batch_size` prompt rows.
        pool: the episodes' environments (:class:`rlhf.envs.pool.EnvPool`).
        turn_format: how prompts and observations become tokens.
        n: episodes per prompt row.
        sampling: how actions are sampled (`max_new_tokens` is `limits.max_tokens_per_turn`).
        limits: where episodes stop.
    """

    def __init__(self, stream: PromptStream, pool, turn_format: TurnFormat, *, n: int, sampling: SamplingParams, limits: Limits):
        self.prompts, self.pool, self.turn_format = PromptGroups(stream), pool, turn_format
        self.n, self.sampling, self.limits = n, sampling, limits
        self.last: Sampled | None = None

    def next_batch(self, roles, timer) -> Sampled:
        rows, row_groups = self.prompts.next()
        groups = [group for group in row_groups for _ in range(self.n)]
        episodes_rows = [row for row in rows for _ in range(self.n)]
        batch, metrics = play_and_score(episodes_rows, roles, self.pool, self.turn_format, self.sampling, self.limits, timer)
        batch.set("group_index", groups)
        self.last = Sampled(batch, batch["scores"], metrics)
        return self.last

    def after_step(self, roles, updated: bool) -> int:
        """Nothing to do: it generates with `roles.rollout`, which the loop syncs."""
        return 0

    def close(self) -> None:
        """Nothing to stop."""

    def state_dict(self) -> dict[str, Any]:
        """The stream's position and the next group id."""
        return self.prompts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prompts.load_state_dict(state)


def play_and_score(rows: list[dict], roles, pool, turn_format: TurnFormat, sampling: SamplingParams, limits: Limits, timer) -> tuple[Batch, dict[str, float]]:
    """Play one episode per row with the policy, grade final answers, and return the batch
    and its `env/*` metrics (also used by held-out evaluation)."""
    pad_id = turn_format.tokenizer.pad_token_id
    choose = policy_chooser(roles.rollout, sampling, pad_id, timer)
    episodes = play_episodes(rows, pool, choose, turn_format, limits, eos_ids(turn_format.tokenizer), on_env=lambda: timer.phase("env"))
    batch = episodes_batch(episodes, rows, pad_id)
    return batch, score_episodes(roles.reward, batch, turn_format.tokenizer, timer)


def score_episodes(reward, batch: Batch, tokenizer, timer) -> dict[str, float]:
    """Grade the final answers of a batch of finished episodes (those with an
    `episode_answer`) and return its reward and `env/*` metrics. Reads only the batch, so
    episodes played in another process (an asynchronous run's rollout process) are scored the
    same way."""
    metrics: dict[str, float] = {}
    graded = [i for i, answer in enumerate(batch["episode_answer"]) if answer is not None]
    if graded:
        with timer.phase("reward"):
            metrics.update(grade_answers(reward, batch, graded, tokenizer))
    metrics.update(episode_metrics(batch))
    return metrics


def policy_chooser(rollout, sampling: SamplingParams, pad_id: int, timer) -> Chooser:
    """The policy's actions: every context of a turn in one `rollout.generate` call."""

    def choose(contexts: dict[int, list[int]], budget: int) -> dict[int, tuple[list[int], list[float] | None]]:
        ids = list(contexts)
        prompt_ids, prompt_mask = sequence_tensor([contexts[i] for i in ids], pad_id, left=True)
        with timer.phase("generate"):
            out = rollout.generate(Batch({"prompt_ids": prompt_ids, "prompt_mask": prompt_mask}), replace(sampling, max_new_tokens=budget))
        chosen = {}
        for row, i in enumerate(ids):
            mask = out["response_mask"][row].bool()
            logprobs = out["rollout_logprobs"][row][mask].tolist() if "rollout_logprobs" in out else None
            chosen[i] = (out["response_ids"][row][mask].tolist(), logprobs)
        return chosen

    return choose


def eos_ids(tokenizer) -> list[int]:
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []


def episodes_batch(episodes: list[Episode], rows: list[dict], pad_id: int) -> Batch:
    """One Batch row per finished episode (the layout of the module docstring)."""
    prompt_ids, prompt_mask = sequence_tensor([e.prompt for e in episodes], pad_id, left=True)
    width = max(1, max(len(e.response) for e in episodes))
    turns = max(1, max(len(e.action_spans) for e in episodes))
    size = len(episodes)
    response_ids = torch.full((size, width), pad_id, dtype=torch.long)
    response_mask, action_mask = torch.zeros((size, width), dtype=torch.long), torch.zeros((size, width), dtype=torch.long)
    turn_index = torch.full((size, width), -1, dtype=torch.long)
    logprobs = torch.zeros((size, width), dtype=torch.float32)
    starts, ends = torch.full((size, turns), -1, dtype=torch.long), torch.full((size, turns), -1, dtype=torch.long)
    turn_rewards, turn_mask = torch.zeros((size, turns)), torch.zeros((size, turns))
    for b, episode in enumerate(episodes):
        length = len(episode.response)
        response_ids[b, :length] = torch.tensor(episode.response, dtype=torch.long)
        response_mask[b, :length] = 1
        action_mask[b, :length] = torch.tensor(episode.is_action, dtype=torch.long)
        logprobs[b, :length] = torch.tensor(episode.logprobs, dtype=torch.float32)
        for k, (start, end) in enumerate(episode.action_spans):
            turn_index[b, start:end] = k
            starts[b, k], ends[b, k] = start, end
        turn_rewards[b, : len(episode.rewards)] = torch.tensor(episode.rewards, dtype=torch.float32)
        turn_mask[b, : len(episode.action_spans)] = 1.0
    tensors = {
        "prompt_ids": prompt_ids, "prompt_mask": prompt_mask, "response_ids": response_ids, "response_mask": response_mask,
        "action_mask": action_mask, "turn_index": turn_index, "action_starts": starts, "action_ends": ends,
        "turn_rewards": turn_rewards, "turn_mask": turn_mask, "num_turns": turn_mask.sum(dim=-1).long(),
        "scores": turn_rewards.sum(dim=-1), "rollout_logprobs": logprobs,
    }
    non_tensors = {key: [row.get(key) for row in rows] for key in dict.fromkeys(k for row in rows for k in row)}
    non_tensors.update({
        "prompt_text": [e.conversation[0]["text"] for e in episodes],
        "response_text": [_transcript(e) for e in episodes],
        "truncated": [e.truncated for e in episodes], "success": [e.success for e in episodes],
        "conversation": [e.conversation for e in episodes], "episode_answer": [e.answer for e in episodes],
        "episode_tool_calls": [e.tool_calls for e in episodes],
    })
    return Batch(tensors, non_tensors)


def _transcript(episode: Episode) -> str:
    """The trajectory after the prompt as readable text: one line per action or observation."""
    return "\n".join(("> " if turn["role"] == "observation" else "") + turn["text"] for turn in episode.conversation[1:])


def grade_answers(reward, batch: Batch, graded: list[int], tokenizer) -> dict[str, float]:
    """Score the final answers (`episode_answer`) of the episodes `graded` with the recipe's
    reward sources; each score joins its episode's last turn reward (and `scores`), and
    decides its `success`."""
    answers = batch.select(graded)
    lasts = (batch["num_turns"][graded] - 1).tolist()  # each graded episode's last turn
    last_actions = [batch["response_ids"][i, int(batch["action_starts"][i, last]) : int(batch["action_ends"][i, last])].tolist()
                    for i, last in zip(graded, lasts)]
    response_ids, response_mask = sequence_tensor(last_actions, tokenizer.pad_token_id, left=False)
    answers.set("response_ids", response_ids).set("response_mask", response_mask)
    answers.set("response_text", [batch["episode_answer"][i] for i in graded])
    answers.meta["tokenizer"] = tokenizer
    result = reward.evaluate(answers)
    for row, (i, last) in enumerate(zip(graded, lasts)):
        batch["turn_rewards"][i, last] += result.scores[row]
        batch["success"][i] = bool(result.scores[row] >= CORRECT_AT)  # the verifier's 1
    batch.set("scores", batch["turn_rewards"].sum(dim=-1))
    for name, scores in result.per_source.items():
        full = torch.zeros(len(batch))
        full[graded] = scores.float()
        batch.set(SOURCE_SCORES + name, full)
    return dict(result.metrics)


def episode_metrics(batch: Batch) -> dict[str, float]:
    """`env/*` metrics of a batch of finished episodes."""
    count = len(batch)
    metrics = {
        "env/turns_mean": float(batch["num_turns"].float().mean()),
        "env/return_mean": float(batch["scores"].mean()),
        "env/truncated_rate": sum(batch["truncated"]) / count,
        "env/tool_calls_mean": sum(batch["episode_tool_calls"]) / count,
        "env/action_tokens_mean": float(batch["action_mask"].sum(dim=-1).float().mean()),
    }
    reported = [success for success in batch["success"] if success is not None]
    if reported:
        metrics["env/success_rate"] = sum(reported) / count
    return metrics
