"""Sample generations of an RL step, for `samples.jsonl` and the dashboards: what the model was
asked, what it answered and what the reward made of it."""

from __future__ import annotations

from collections import Counter

from rlhf.data.batch import Batch
from rlhf.rollout.source import SOURCE_SCORES


def sample_generations(batch: Batch, limit: int) -> list[dict]:
    """Up to `limit` samples of a scored RL batch, one prompt's first response before any
    prompt's second (the batch holds each prompt's responses consecutively).

    Each sample: prompt (the text the model saw), response, reward (the total score),
    rewards (each source's own score by name), ground_truth, and data_source when the rows
    have it; an asynchronous run adds group (the prompt's group id) and policy_version, and on
    Ray rollout_rank (the rollout worker that generated it); a multi-turn episode adds its
    conversation (the user's prompt, then each action and observation), turns, turn_rewards,
    success and truncated.
    """
    sources = [key for key in batch.keys() if key.startswith(SOURCE_SCORES)]
    samples = []
    for i in spread_over_groups(batch["group_index"], limit):
        sample = {
            "prompt": batch["prompt_text"][i],
            "response": batch["response_text"][i],
            "reward": float(batch["scores"][i]),
            "rewards": {key.removeprefix(SOURCE_SCORES): float(batch[key][i]) for key in sources},
            "ground_truth": batch["ground_truth"][i] if "ground_truth" in batch else None,
        }
        if "data_source" in batch:
            sample["data_source"] = batch["data_source"][i]
        if "policy_version" in batch:  # an asynchronous run: which prompt, sampled by which policy
            sample.update(group=int(batch["group_index"][i]), policy_version=int(batch["policy_version"][i]))
        if "rollout_rank" in batch:  # several rollout workers: which one generated it
            sample["rollout_rank"] = int(batch["rollout_rank"][i])
        if "conversation" in batch:  # a multi-turn episode: every turn, and how it ended
            sample.update(conversation=batch["conversation"][i], turns=int(batch["num_turns"][i]),
                          turn_rewards=batch["turn_rewards"][i, : int(batch["num_turns"][i])].tolist(),
                          success=batch["success"][i], truncated=batch["truncated"][i])
        samples.append(sample)
    return samples


def spread_over_groups(group_index: list, limit: int) -> list[int]:
    """Positions of `limit` samples: the first response of every group, then the second, ...
    (so a few samples show different prompts rather than one prompt's group)."""
    seen: Counter = Counter()
    rank_in_group = []
    for group in group_index:
        rank_in_group.append(seen[group])
        seen[group] += 1
    order = sorted(range(len(group_index)), key=lambda i: (rank_in_group[i], i))
    return order[:limit]
