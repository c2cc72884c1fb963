"""Multi-turn episodes in the rollout process of an asynchronous run: with `env.type` set, a
group is `rollout.n` episodes of one prompt row, played to their end against the rollout
process's own environments with its own engine.

An episode is the unit of the stream: it is played with one policy version from its first
action to its last (the weights are taken between generate calls, never inside an episode),
so every action token carries that version and the observations between actions carry none
(−1, as padding does). The batch is the multi-turn source's (:mod:`rlhf.rollout.multi_turn`),
played but not graded: final answers are graded by the trainer's reward sources when the
group is taken (:func:`rlhf.rollout.multi_turn.score_episodes`).
"""

from __future__ import annotations

import torch

from rlhf.data.batch import Batch
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.episodes import Limits, play_episodes
from rlhf.rollout.multi_turn import eos_ids, episodes_batch, policy_chooser
from rlhf.rollout.turn_format import TurnFormat
from rlhf.timing import PhaseTimer


class EpisodePlayer:
    """The rollout process's environments (built from `config.env`) and how it plays them."""

    def __init__(self, config, tokenizer, sampling: SamplingParams):
        from rlhf.envs.pool import build_env_pool

        self.pool = build_env_pool(config.env)
        self.turn_format = TurnFormat(tokenizer, config.data, config.env)
        self.limits, self.sampling = Limits.of(config.env), sampling

    def play(self, engine, rows: list[dict], groups: list[int], version: int) -> Batch:
        """One episode per row with `engine`, which holds policy `version`; the batch of
        :func:`rlhf.rollout.multi_turn.episodes_batch` with `group_index` and `token_versions
        [B, R]` (`version` on action tokens, −1 elsewhere)."""
        tokenizer = self.turn_format.tokenizer
        choose = policy_chooser(engine, self.sampling, tokenizer.pad_token_id, PhaseTimer())
        episodes = play_episodes(rows, self.pool, choose, self.turn_format, self.limits, eos_ids(tokenizer))
        batch = episodes_batch(episodes, rows, tokenizer.pad_token_id).set("group_index", groups)
        versions = torch.where(batch["action_mask"].bool(), version, -1)
        return batch.set("token_versions", versions)

    def close(self) -> None:
        self.pool.close()
