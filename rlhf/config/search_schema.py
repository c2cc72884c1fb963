"""Search through a reward model in recipes: the section `eval` (how `rlhf eval` spends
inference compute; each key has a command-line flag of the same meaning, which wins when both
are given) and `rollout.search` (the responses a training step learns from are chosen by a
search, expert-iteration style). See :mod:`rlhf.search` for the strategies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEARCH_STRATEGIES = ("best_of_n", "weighted_vote", "step_beam")
"""What `eval.search.strategies` (and `rlhf eval --search`) take."""
ROLLOUT_STRATEGIES = ("none", "best_of_n", "step_beam")
"""What `rollout.search.strategy` takes (a vote picks an answer, not a response to learn from)."""
SAMPLE_STRATEGIES = ("best_of_n", "weighted_vote")
"""The strategies judged on an evaluation's n samples at every k (the step beam samples its own)."""
STEP_AGGREGATES = ("min", "product", "last", "mean")
"""How a PRM's step scores fold into one score per response."""


@dataclass
class SearchConfig:
    """Test-time search strategies judged by `rlhf eval` (flags: --search, --reward-model,
    --aggregate, --beam-width, --beam-k, --beam-budget)."""

    strategies: list[str] = field(default_factory=list)
    """best_of_n and weighted_vote (judged at every k of trainer.eval_k / --k), step_beam;
    []: none."""
    reward_model: str = ""
    """The ORM or PRM directory `rlhf rm` wrote (OUTPUT_DIR/model); needed by every strategy."""
    aggregate: str = "min"
    """A PRM's step scores folded into one per response: min, product, last or mean."""
    beam_width: int | list[int] = 4
    """step_beam: partial solutions kept after each round; a list of widths (e.g. [1, 2, 4])
    makes the step beam a line of the scaling curve, one point per width."""
    beam_k: int = 4
    """step_beam: next steps sampled per kept partial solution."""
    beam_budget: int = 0
    """step_beam: generated tokens per prompt after which no round starts (0: beam_width x
    beam_k x rollout.max_new_tokens, for each width)."""


def beam_width_problem(value: Any) -> str | None:
    """What is wrong with a step-beam width setting (a whole number >= 1 or a non-empty list of
    them), to be said after the key or flag that gave it; None when it is fine."""
    widths = value if isinstance(value, list) else [value]
    where = f" in {value!r}" if isinstance(value, list) else ""
    if not widths:
        return "needs at least one width, got []"
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, int):
            return f"expected a whole number or a list of whole numbers, got {width!r}{where}"
        if width < 1:
            return f"must be >= 1, got {width}{where}"
    return None


def beam_widths(value: int | list[int]) -> tuple[int, ...]:
    """The widths of a valid setting (:func:`beam_width_problem`), ascending, each once: the
    points of the step beam's line."""
    return tuple(sorted(set(value if isinstance(value, list) else [value])))


@dataclass
class EvalConfig:
    """`rlhf eval`'s settings beyond the held-out data (data.eval) and pass@k (trainer.eval_k)."""

    search: SearchConfig = field(default_factory=SearchConfig)
    """Test-time search through a reward model."""


@dataclass
class RolloutSearchConfig:
    """Training on searched responses: each of a prompt's rollout.n responses is the one a
    search through a reward model picks (read with `strategy` other than 'none')."""

    strategy: str = "none"
    """'none' (sample as usual), 'best_of_n' (the highest-scored of `n` samples) or 'step_beam'
    (beam search over reasoning steps scored by a PRM)."""
    reward_model: str = ""
    """The ORM or PRM directory `rlhf rm` wrote (step_beam: a PRM)."""
    n: int = 4
    """best_of_n: candidates sampled per response."""
    aggregate: str = "min"
    """A PRM's step scores folded into one per response: min, product, last or mean."""
    beam_width: int = 2
    """step_beam: partial solutions kept after each round."""
    beam_k: int = 2
    """step_beam: next steps sampled per kept partial solution."""
    beam_budget: int = 0
    """step_beam: generated tokens per response after which no round starts (0: beam_width x
    beam_k x rollout.max_new_tokens)."""
