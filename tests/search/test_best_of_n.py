"""Best-of-N on hand-worked examples: ORM scores, each PRM aggregation, ties, the cost."""

import pytest
import torch

from rlhf.search.best_of_n import best_of_n
from rlhf.search.cost import SearchCost

# Four responses' PRM step scores, chosen so that each rule picks a different one:
#        min    product  last   mean
# A      0.80   0.640    0.80   0.800
# B      0.70   0.665    0.70   0.825
# C      0.75   0.750    0.75   0.750
# D      0.30   0.297    0.99   0.645
STEP_SCORES = [[0.8, 0.8], [0.95, 0.7], [0.75], [0.3, 0.99]]
RESPONSES = ["A", "B", "C", "D"]


def test_orm_scores_pick_the_highest():
    chosen = best_of_n(RESPONSES, [0.2, 0.9, 0.5, -1.0], token_counts=[10, 20, 30, 40])
    assert (chosen.index, chosen.candidate, chosen.score) == (1, "B", 0.9)
    assert chosen.cost == SearchCost(samples=4, generated_tokens=100, scored=4, rounds=1)


@pytest.mark.parametrize("how, winner", [("min", "A"), ("product", "C"), ("last", "D"), ("mean", "B")])
def test_each_prm_aggregation_picks_its_own_winner(how, winner):
    chosen = best_of_n(RESPONSES, STEP_SCORES, token_counts=[1, 1, 1, 1], how=how)
    assert chosen.candidate == winner
    as_tensors = best_of_n(RESPONSES, [torch.tensor(s) for s in STEP_SCORES], token_counts=torch.ones(4), how=how)
    assert as_tensors.index == chosen.index


def test_ties_go_to_the_earliest_response():
    assert best_of_n(["x", "y", "z"], [0.1, 0.7, 0.7], token_counts=[1, 1, 1]).index == 1
    assert best_of_n(["x", "y"], [[0.5, 0.9], [0.6, 0.5]], token_counts=[1, 1], how="min").index == 0


def test_a_blank_response_loses_to_any_scored_step_and_n_1_returns_the_sample():
    assert best_of_n(["", "some step"], [[], [0.01]], token_counts=[1, 3]).index == 1
    assert best_of_n(["only"], [[]], token_counts=[0]).candidate == "only"


@pytest.mark.parametrize("candidates, scores, counts, message", [
    ([], [], [], "at least one candidate"),
    (["a", "b"], [0.1], [1, 1], "scores has 1 entries for 2 candidates"),
    (["a", "b"], [0.1, 0.2], [1], "token_counts has 1 entries for 2 candidates"),
])
def test_mismatched_inputs_are_named(candidates, scores, counts, message):
    with pytest.raises(ValueError, match=message):
        best_of_n(candidates, scores, token_counts=counts)
