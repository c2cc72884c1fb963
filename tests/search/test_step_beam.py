"""Step beam search on a hand-built tree of steps: against exhaustive search with a wide beam,
against the greedy-by-PRM path with a beam of 1, token accounting, the budget, and errors."""

import math

import pytest

from rlhf.search.aggregate import AGGREGATIONS, aggregate_steps
from rlhf.search.beam import Partial, Step, step_beam
from rlhf.search.cost import SearchCost

# The tree: node (a path of child indices) -> (PRM score of its step, step length, ends the solution).
# Depth 3, branching 3; two nodes at depth 2 end early, every depth-3 node ends.
INNER = {
    (0,): (0.6, 2, False), (1,): (0.9, 1, False), (2,): (0.5, 3, False),
    (0, 0): (0.8, 1, False), (0, 1): (0.95, 2, False), (0, 2): (0.93, 1, True),
    (1, 0): (0.5, 2, False), (1, 1): (0.3, 1, False), (1, 2): (0.45, 2, True),
    (2, 0): (0.9, 1, False), (2, 1): (0.6, 2, False), (2, 2): (0.85, 3, False),
}
LEAF_SCORES = {
    (0, 0): (0.5, 0.55, 0.4), (0, 1): (0.58, 0.55, 0.45), (1, 0): (0.9, 0.2, 0.35), (1, 1): (0.97, 0.1, 0.3),
    (2, 0): (0.88, 0.92, 0.4), (2, 1): (0.75, 0.8, 0.52), (2, 2): (0.3, 0.96, 0.99),
}
TREE = {**INNER, **{(*parent, c): (score, 1 + (sum(parent) + c) % 3, True)
                    for parent, scores in LEAF_SCORES.items() for c, score in enumerate(scores)}}
NODE_ID = {path: 100 + i for i, path in enumerate(sorted(TREE))}


def step_of(path):
    """A node's step: its length in copies of its own token id; an ending step also generated an
    EOS token the engine dropped, so it costs one token more than it keeps."""
    score, length, ended = TREE[path]
    return Step((NODE_ID[path],) * length, ended, length + ended)


PATH_OF_PREFIX = {(): ()} | {
    tuple(token for depth in range(1, len(path) + 1) for token in step_of(path[:depth]).token_ids): path for path in TREE
}


class TreeSearch:
    """`expand` returns a node's children in order (at most k), `score` aggregates the scores
    of a partial solution's steps by `how`; both record what they were asked."""

    def __init__(self, how):
        self.how, self.expanded, self.steps = how, [], []

    def expand(self, prefixes, k):
        out = []
        for prefix in prefixes:
            path = PATH_OF_PREFIX[prefix]  # a KeyError here: the search changed a prefix's tokens
            self.expanded.append(path)
            out.append([step_of((*path, c)) for c in range(3) if (*path, c) in TREE][:k])
            self.steps += out[-1]
        return out

    def score(self, partials):
        return [self.value(path_of(partial)) for partial in partials]

    def value(self, path):
        return aggregate_steps([TREE[path[:depth]][0] for depth in range(1, len(path) + 1)], self.how)


def path_of(partial):
    return PATH_OF_PREFIX[partial.token_ids]


def exhaustive_optimum(how):
    """The finished solution with the best aggregate over the whole tree, checked to be unique."""
    values = {path: TreeSearch(how).value(path) for path, (_, _, ended) in TREE.items() if ended}
    best = max(values.values())
    winners = [path for path, value in values.items() if value == best]
    assert len(winners) == 1, (how, winners)
    return winners[0], best


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_a_beam_as_wide_as_the_tree_finds_the_exhaustive_optimum(how):
    tree = TreeSearch(how)
    result = step_beam(tree.expand, tree.score, beam_width=27, k=3, token_budget=10_000)
    assert (path_of(result.solution), result.solution.score) == exhaustive_optimum(how)
    assert result.finished and result.solution.ended
    assert sorted(map(path_of, result.finished_pool)) == sorted(path for path, (_, _, ended) in TREE.items() if ended)
    # every node generated exactly once, discarded or not; every partial solution scored once
    assert result.cost == SearchCost(samples=len(TREE), generated_tokens=sum(step_of(p).num_tokens for p in TREE),
                                     scored=len(TREE), rounds=3)
    # by hand: depth 1: 2 + 1 + 3; depth 2: 1 + 2 + (1+EOS) + 2 + 1 + (2+EOS) + 1 + 2 + 3; depth 3: seven
    # parents whose children have lengths 1, 2 and 3 in some order, each + EOS
    assert result.cost.generated_tokens == sum(step.num_tokens for step in tree.steps) == 6 + 17 + 7 * 9
    assert result.expanded == len(tree.expanded) == 1 + 3 + 7


def test_the_exhaustive_optimum_is_not_what_greedy_finds():
    assert exhaustive_optimum("last")[0] == (2, 2, 2) and exhaustive_optimum("min")[0] == (0, 2)


@pytest.mark.parametrize("how", ["last", "min"])
def test_a_beam_of_one_follows_the_greedy_prm_path(how):
    # by hand: the first steps score 0.6, 0.9, 0.5 -> (1,); its children 0.5, 0.3, 0.45 (min: the
    # same, capped at 0.9) -> (1, 0); its children 0.9, 0.2, 0.35 (min: 0.5, 0.2, 0.35) -> (1, 0, 0)
    tree = TreeSearch(how)
    result = step_beam(tree.expand, tree.score, beam_width=1, k=3, token_budget=10_000)
    assert path_of(result.solution) == (1, 0, 0) and result.finished
    assert result.solution.score == {"last": 0.9, "min": 0.5}[how]
    assert tree.expanded == [(), (1,), (1, 0)]
    # lengths: (0,) 2, (1,) 1, (2,) 3 | (1, 0) 2, (1, 1) 1, (1, 2) 2+EOS | (1, 0, 0) 2+EOS, (1, 0, 1) 3+EOS, (1, 0, 2) 1+EOS
    assert result.cost == SearchCost(samples=9, generated_tokens=6 + 6 + 9, scored=9, rounds=3)


def test_the_first_round_samples_beam_width_times_k_first_steps():
    asked = []

    def expand(prefixes, k):
        asked.append((len(prefixes), k))
        return [[Step((1,), True, 1)] for _ in prefixes]

    step_beam(expand, lambda partials: [0.5] * len(partials), beam_width=4, k=2, token_budget=100)
    assert asked == [(1, 8)]


@pytest.mark.parametrize("budget, rounds, tokens, path, finished", [
    (6, 1, 6, (1,), False),  # the first round spends 6 tokens: no second round, the best live partial
    (7, 2, 12, (1, 0), False),  # the second round starts under budget and runs to its end
    (12, 2, 12, (1, 0), False),
    (13, 3, 21, (1, 0, 0), True),
])
def test_the_budget_stops_the_search_between_rounds(budget, rounds, tokens, path, finished):
    tree = TreeSearch("last")
    result = step_beam(tree.expand, tree.score, beam_width=1, k=3, token_budget=budget)
    assert (result.cost.rounds, result.cost.generated_tokens, path_of(result.solution), result.finished) == (rounds, tokens, path, finished)
    assert result.solution.ended == finished


def test_a_finished_solution_beats_better_scored_live_ones_when_the_budget_ends():
    # width 3, last: round 2 keeps (0, 1) 0.95, (0, 2) 0.93 (ended), (2, 0) 0.9, then the budget is spent
    tree = TreeSearch("last")
    result = step_beam(tree.expand, tree.score, beam_width=3, k=3, token_budget=7)
    assert result.cost.rounds == 2
    assert path_of(result.solution) == (0, 2) and result.finished
    assert [path_of(p) for p in result.finished_pool] == [(0, 2)]


def test_equal_scores_keep_the_order_of_generation():
    def expand(prefixes, k):
        return [[Step((7,), True, 1), Step((8,), True, 1), Step((9,), False, 1)] for _ in prefixes]

    result = step_beam(expand, lambda partials: [0.5] * len(partials), beam_width=1, k=3, token_budget=10)
    assert result.solution == Partial(((7,),), True, 0.5)


def test_k_caps_the_steps_sampled_per_beam():
    tree = TreeSearch("last")
    result = step_beam(tree.expand, tree.score, beam_width=1, k=1, token_budget=100)
    assert tree.expanded == [(), (0,), (0, 0)] and path_of(result.solution) == (0, 0, 0)
    assert result.cost.samples == 3


@pytest.mark.parametrize("name, kwargs", [
    ("beam_width", {"beam_width": 0}), ("k", {"k": 0}), ("token_budget", {"token_budget": 0}),
    ("beam_width", {"beam_width": -1}), ("k", {"k": 1.5}), ("token_budget", {"token_budget": True}),
])
def test_bad_arguments_name_themselves(name, kwargs):
    tree = TreeSearch("min")
    arguments = {"beam_width": 2, "k": 2, "token_budget": 10} | kwargs
    with pytest.raises(ValueError, match=f"step_beam: {name} must be a whole number >= 1, got {kwargs[name]!r}"):
        step_beam(tree.expand, tree.score, **arguments)
    assert tree.expanded == []


@pytest.mark.parametrize("expand, score, message", [
    (lambda prefixes, k: [], None, "expand returned steps for 0 prefixes, asked for 1"),
    (lambda prefixes, k: [[]], None, "returned 0 steps for a prefix; it must return 1 to 2"),
    (lambda prefixes, k: [[Step((1,), True, 1)] * 3], None, "returned 3 steps"),
    (lambda prefixes, k: [[Step((), False, 0)]], None, "a step of 0 tokens that does not end"),
    (None, lambda partials: [], "score returned 0 values for 2 partial solutions"),
    (None, lambda partials: [math.nan, 0.5], "partial solution 0 is NaN"),
])
def test_a_broken_expand_or_score_is_named(expand, score, message):
    tree = TreeSearch("min")
    with pytest.raises(ValueError, match=message):
        step_beam(expand or tree.expand, score or tree.score, beam_width=1, k=2, token_budget=10)


def test_the_tree_is_what_its_comment_says():
    assert len(TREE) == 3 + 9 + 21 and all(ended for path, (_, _, ended) in TREE.items() if len(path) == 3)
    assert [path for path, (_, _, ended) in INNER.items() if ended] == [(0, 2), (1, 2)]
