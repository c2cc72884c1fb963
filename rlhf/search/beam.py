"""Beam search over reasoning steps, guided by a process reward model (PRM).

Snell et al. 2024 ("Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
Model Parameters", §5.2, beam search against a PRM), a breadth-first search over steps in the
manner of Yao et al. 2023 ("Tree of Thoughts", BFS):

1. sample beam_width·k first steps (Snell et al. sample N = beams × proposals first steps, so
   every round scores about the same number of candidates);
2. score every extended partial solution with the PRM (the aggregate of its step scores so far:
   :func:`rlhf.search.aggregate.aggregate_steps`);
3. keep the best beam_width candidates; those that ended go to the finished pool, the others
   stay live (a finished candidate holds its slot, as in ordinary beam search, so the live beam
   narrows as solutions end);
4. expand each live beam with k sampled next steps and go back to 2, until no beam is live or
   the token budget is spent.

The answer is the best finished solution; when the budget runs out before any solution
finished, it is the best live partial solution, flagged `finished=False` (the caller scores
it as it is; a verifier usually finds no answer in it).

The budget counts every generated token, those of discarded candidates included: what "tokens
per problem" means on a scaling curve. It is checked before each round, and a round already
generated is used, so the spent tokens can pass the budget by at most one round's.

Models stay outside: the search calls `expand` (the policy) and `score` (the PRM), two small
callables (:class:`ExpandSteps`, :class:`ScorePartials`), so it is tested on a hand-built tree.
Partial solutions are kept as token ids and handed back to `expand` as such, never decoded
and re-tokenised (which can change the tokens and the policy's probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from rlhf.search.aggregate import NO_STEPS, check_not_nan
from rlhf.search.cost import SearchCost


@dataclass(frozen=True)
class Step:
    """One sampled reasoning step."""

    token_ids: tuple[int, ...]
    """Its tokens as the policy generated them (with the delimiter that ended it)."""
    ended: bool
    """The solution ends with it: the policy generated EOS, or the response hit its length cap."""
    num_tokens: int
    """Tokens generated for it, what the budget counts: len(token_ids), plus an EOS token
    the engine generated but did not keep."""


@dataclass(frozen=True)
class Partial:
    """A partial (or, once `ended`, finished) solution: the steps generated so far."""

    steps: tuple[tuple[int, ...], ...] = ()
    """The token ids of each step, in order (the root, before any step: empty)."""
    ended: bool = False
    """Its last step ended the solution."""
    score: float = NO_STEPS
    """The PRM's aggregate over its steps (the root, never ranked: NO_STEPS)."""

    @property
    def token_ids(self) -> tuple[int, ...]:
        """The response so far: its steps' token ids, concatenated."""
        return tuple(token for step in self.steps for token in step)


class ExpandSteps(Protocol):
    """The policy: for each prefix (a response so far, as token ids after the prompt, which the
    callable knows), between 1 and `k` sampled next steps (fewer when it drops duplicates)."""

    def __call__(self, prefixes: Sequence[tuple[int, ...]], k: int) -> Sequence[Sequence[Step]]: ...


class ScorePartials(Protocol):
    """The PRM: one score per partial solution, the aggregate of its step scores so far."""

    def __call__(self, partials: Sequence[Partial]) -> Sequence[float]: ...


@dataclass(frozen=True)
class BeamResult:
    """What a step beam search returns."""

    solution: Partial
    """The best finished solution (the earliest finished among equal scores), or the best live
    partial one when the budget ran out first."""
    finished: bool
    """`solution` ended (False: the budget ran out before any solution finished)."""
    finished_pool: tuple[Partial, ...]
    """Every finished solution the beam kept, in the order they finished."""
    cost: SearchCost
    """samples: steps sampled; generated_tokens: their tokens; scored: partial solutions
    scored; rounds: calls to `expand`."""
    expanded: int
    """Prefixes expanded, summed over the rounds."""


def step_beam(expand: ExpandSteps, score: ScorePartials, *, beam_width: int, k: int, token_budget: int) -> BeamResult:
    """Beam search over reasoning steps (see the module docstring for the loop and the budget).

    Args:
        expand: samples next steps of partial solutions (:class:`ExpandSteps`).
        score: scores partial solutions with the PRM (:class:`ScorePartials`).
        beam_width: partial solutions kept after each round, >= 1.
        k: next steps sampled per live partial solution, >= 1 (the first round samples
            beam_width·k first steps).
        token_budget: generated tokens after which no new round starts, >= 1.

    Candidates with equal scores keep the order in which they were generated (the beams in
    rank order, each beam's steps in the order `expand` returned them), so the search is
    deterministic given `expand` and `score`.
    """
    _check_positive(beam_width=beam_width, k=k, token_budget=token_budget)
    live, finished = [Partial()], []
    cost, expanded = SearchCost(), 0
    while live and cost.generated_tokens < token_budget:
        # 1, 4: the root's first steps, then k next steps of each live beam
        candidates, tokens = _expand(expand, live, k * beam_width if cost.rounds == 0 else k)
        # 2: the PRM scores every extended partial solution
        candidates = _score(score, candidates)
        cost += SearchCost(samples=len(candidates), generated_tokens=tokens, scored=len(candidates), rounds=1)
        expanded += len(live)
        # 3: the best beam_width go on (sorted is stable, so equal scores keep their order)
        kept = sorted(candidates, key=lambda partial: partial.score, reverse=True)[:beam_width]
        finished += [partial for partial in kept if partial.ended]
        live = [partial for partial in kept if not partial.ended]
    # max keeps the first of equal scores; live is already ranked
    solution = max(finished, key=lambda partial: partial.score) if finished else live[0]
    return BeamResult(solution, bool(finished), tuple(finished), cost, expanded)


def _expand(expand: ExpandSteps, live: list[Partial], asked: int) -> tuple[list[Partial], int]:
    """The candidates of one round (each live beam extended by each of its sampled steps) and
    the tokens generated for them; checks that `expand` kept its side of the protocol."""
    sampled = list(expand([beam.token_ids for beam in live], asked))
    if len(sampled) != len(live):
        raise ValueError(f"step_beam: expand returned steps for {len(sampled)} prefixes, asked for {len(live)}")
    candidates, tokens = [], 0
    for beam, steps in zip(live, sampled):
        if not 1 <= len(steps) <= asked:
            raise ValueError(f"step_beam: expand returned {len(steps)} steps for a prefix; it must return 1 to {asked}")
        for step in steps:
            if step.num_tokens < 0 or (step.num_tokens == 0 and not step.ended):
                raise ValueError(f"step_beam: expand returned a step of {step.num_tokens} tokens that does not end the "
                                 "solution; a step that costs nothing and goes on would let the search run forever")
            candidates.append(Partial((*beam.steps, tuple(step.token_ids)), step.ended))
            tokens += step.num_tokens
    return candidates, tokens


def _score(score: ScorePartials, candidates: list[Partial]) -> list[Partial]:
    """The candidates with their PRM scores."""
    values = [float(value) for value in score(candidates)]
    if len(values) != len(candidates):
        raise ValueError(f"step_beam: score returned {len(values)} values for {len(candidates)} partial solutions")
    check_not_nan(values, "partial solution")
    return [replace(partial, score=value) for partial, value in zip(candidates, values)]


def _check_positive(**arguments: int) -> None:
    """Each argument is a whole number >= 1 (the error names the first that is not)."""
    for name, value in arguments.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"step_beam: {name} must be a whole number >= 1, got {value!r}")
