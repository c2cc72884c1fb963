"""Multi-turn episodes in lockstep: each turn, every unfinished episode chooses its next
action in one batched call, the environments step, and finished episodes leave the batch.

    (1) reset: one environment per episode; its first observation joins the prompt
    (2) per turn: the unfinished episodes' contexts (prompt ++ everything since) go to the
        policy in one batch; each gets an action of at most `env.max_tokens_per_turn` tokens
    (3) the environments step on the actions' text (in parallel where they run in processes)
    (4) an episode ends when its environment says done, after `env.max_turns` actions, or
        when the next observation would not fit in `env.max_total_tokens` (truncated);
        otherwise its observation's tokens are appended and it plays the next turn

Tokens are kept exactly as generated and fed back (:mod:`rlhf.rollout.turn_format`).
:func:`episodes_batch` turns finished episodes into one Batch row each (the contract of
:mod:`rlhf.rollout.multi_turn`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from rlhf.config.env_schema import EnvConfig
from rlhf.rollout.turn_format import TurnFormat

Chooser = Callable[[dict[int, list[int]], int], dict[int, tuple[list[int], list[float] | None]]]
"""(context token ids of each unfinished episode, token budget) -> (action ids, their
logprobs or None) of each: the policy's sampler, or the environment's demonstrator."""


@dataclass
class Limits:
    """Where episodes stop (`env.max_turns`, `env.max_tokens_per_turn`, `env.max_total_tokens`)."""

    max_turns: int
    max_tokens_per_turn: int
    max_total_tokens: int

    @classmethod
    def of(cls, env: EnvConfig) -> "Limits":
        return cls(env.max_turns, env.max_tokens_per_turn, env.max_total_tokens)


@dataclass
class Episode:
    """One trajectory as it is played."""

    prompt: list[int]
    response: list[int] = field(default_factory=list)
    """Action and observation tokens after the prompt, in order."""
    is_action: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    action_spans: list[tuple[int, int]] = field(default_factory=list)
    """(first, one past the last) response column of each action."""
    rewards: list[float] = field(default_factory=list)
    conversation: list[dict] = field(default_factory=list)
    done: bool = False
    truncated: bool = False
    success: bool | None = None
    tool_calls: int = 0
    answer: str | None = None
    """The final answer, when the environment asks the reward sources to score it."""

    @property
    def length(self) -> int:
        return len(self.prompt) + len(self.response)

    @property
    def finished(self) -> bool:
        return self.done or self.truncated

    def add_action(self, ids: list[int], logprobs: list[float] | None, text: str) -> None:
        start = len(self.response)
        self.response += ids
        self.is_action += [1] * len(ids)
        self.logprobs += logprobs if logprobs is not None else [0.0] * len(ids)
        self.action_spans.append((start, len(self.response)))
        self.conversation.append({"role": "assistant", "text": text})

    def add_observation(self, ids: list[int], text: str) -> None:
        self.response += ids
        self.is_action += [0] * len(ids)
        self.logprobs += [0.0] * len(ids)
        self.conversation.append({"role": "observation", "text": text})


def play_episodes(rows: list[dict], pool, choose: Chooser, turn_format: TurnFormat, limits: Limits, eos_ids: list[int],
                  on_env: Callable[[], object] | None = None) -> list[Episode]:
    """Play one episode per row to its end (steps 1-4 of the module docstring). `pool` is an
    :class:`rlhf.envs.pool.EnvPool`; `on_env()` returns a context manager timing the
    environment's share of the work (e.g. `timer.phase("env")`)."""
    timing = on_env or _no_timing
    # 1. reset
    with timing():
        first = pool.reset(rows)
    episodes = []
    for row, observation in zip(rows, first):
        episode = Episode(turn_format.prompt_ids(row, observation))
        episode.conversation.append({"role": "user", "text": turn_format.prompt_text(row, observation)})
        episode.truncated = episode.length >= limits.max_total_tokens
        episodes.append(episode)
    for turn in range(limits.max_turns):
        active = [i for i, episode in enumerate(episodes) if not episode.finished]
        if not active:
            break
        # 2. one batched call for every unfinished episode's next action
        chosen = choose({i: episodes[i].prompt + episodes[i].response for i in active}, limits.max_tokens_per_turn)
        texts = {}
        for i in active:
            ids, logprobs = chosen[i]
            room = limits.max_total_tokens - episodes[i].length
            if len(ids) > room:  # the context budget ends the episode inside this action
                ids, logprobs, episodes[i].truncated = ids[:room], (logprobs[:room] if logprobs else logprobs), True
            texts[i] = turn_format.tokenizer.decode(ids, skip_special_tokens=True)
            episodes[i].add_action(ids, logprobs, texts[i])
        # 3. the environments step on the actions' text
        with timing():
            steps = pool.step(texts, turn)
        # 4. end the episode, or append its observation
        for i in active:
            _apply_step(episodes[i], steps[i], turn, limits, turn_format, eos_ids)
            _check_observation_fits(episodes[i], steps[i], i, turn, limits, turn_format, getattr(pool, "label", "the environment"))
    for episode in episodes:
        if not episode.done:
            episode.truncated = True
    return episodes


def _apply_step(episode: Episode, step, turn: int, limits: Limits, turn_format: TurnFormat, eos_ids: list[int]) -> None:
    episode.rewards.append(float(step.reward))
    episode.tool_calls += int(step.info.get("tool_calls", 0))
    if "success" in step.info:
        episode.success = bool(step.info["success"])
    if step.done:
        episode.done = True
        episode.answer = step.info.get("answer")
        return
    if episode.truncated or turn + 1 == limits.max_turns:
        episode.truncated = True
        return
    ended_with_eos = bool(episode.response) and episode.response[-1] in eos_ids
    ids = turn_format.observation_ids(step.observation, ended_with_eos, tool=int(step.info.get("tool_calls", 0)) > 0)
    if episode.length + len(ids) >= limits.max_total_tokens:  # no room left for another action
        episode.truncated = True
        return
    episode.add_observation(ids, step.observation)  # the transcript shows the environment's own text


def _check_observation_fits(episode: Episode, step, index: int, turn: int, limits: Limits, turn_format: TurnFormat, label: str) -> None:
    """An observation that alone leaves no room for an action after the episode's prompt can
    never be shown in `env.max_total_tokens`: a mistake of the environment or the budget, not
    a truncation to train on."""
    if step.done or not episode.truncated or not step.observation:
        return
    tokens = len(turn_format.encode(step.observation))
    room = limits.max_total_tokens - len(episode.prompt) - 1
    if tokens > room:
        from rlhf.envs.errors import EnvError

        raise EnvError(
            f"{label}: the observation of episode {index} at turn {turn} has {tokens} tokens, more than the {room} that "
            f"env.max_total_tokens ({limits.max_total_tokens}) leaves after its prompt ({len(episode.prompt)} tokens) and one action "
            "token: it could never be shown to the policy. Shorten the environment's observations or raise env.max_total_tokens"
        )


class _no_timing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
