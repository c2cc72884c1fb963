"""PRM aggregation rules and the cost record, on hand-computed values."""

import math

import pytest
import torch

from rlhf.search.aggregate import AGGREGATIONS, NO_STEPS, aggregate_steps, response_scores
from rlhf.search.cost import SearchCost


@pytest.mark.parametrize("how, expected", [("min", 0.5), ("product", 0.9 * 0.5 * 0.8), ("last", 0.8), ("mean", (0.9 + 0.5 + 0.8) / 3)])
def test_each_rule_on_three_steps(how, expected):
    assert aggregate_steps([0.9, 0.5, 0.8], how) == pytest.approx(expected, abs=1e-12)
    assert aggregate_steps(torch.tensor([0.9, 0.5, 0.8], dtype=torch.float64), how) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_a_response_without_steps_scores_zero_under_every_rule(how):
    assert aggregate_steps([], how) == NO_STEPS == 0.0
    assert aggregate_steps(torch.zeros(0), how) == 0.0


def test_min_is_the_default_as_in_the_prm_source():
    assert aggregate_steps([0.3, 0.9]) == 0.3


def test_an_unknown_rule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown PRM aggregation 'max'; valid: min, product, last, mean"):
        aggregate_steps([0.5], "max")


def test_response_scores_reads_orm_scalars_and_prm_step_lists():
    assert response_scores([0.25, 1, torch.tensor(0.5)]) == [0.25, 1.0, 0.5]
    assert response_scores(torch.tensor([0.25, -1.5])) == [0.25, -1.5]
    assert response_scores([[0.9, 0.4], torch.tensor([0.7]), []], "last") == [pytest.approx(0.4), pytest.approx(0.7), 0.0]


@pytest.mark.parametrize("scores, message", [
    ([0.5, [0.5]], "mix single numbers"),
    ([0.5, math.nan], "response 1 is NaN"),
    ([[0.5], [0.2, math.nan]], "step 1 is NaN"),  # min([0.2, nan]) would be 0.2, min([nan, 0.2]) nan
    (torch.zeros(2, 3), "1-d tensor"),
])
def test_response_scores_rejects_what_cannot_be_ranked(scores, message):
    with pytest.raises(ValueError, match=message):
        response_scores(scores, "last")


def test_search_cost_of_samples_and_sum():
    cost = SearchCost.of_samples([10, 20, 5], scored=True)
    assert cost == SearchCost(samples=3, generated_tokens=35, scored=3, rounds=1)
    assert SearchCost.of_samples(torch.tensor([4.0, 6.0]), scored=False) == SearchCost(2, 10, 0, 1)
    assert cost + SearchCost(1, 2, 3, 4) == SearchCost(4, 37, 6, 5)
    assert sum([cost, cost], SearchCost()) == SearchCost(6, 70, 6, 2)
    with pytest.raises(ValueError, match=r"token_counts\[1\] is -2"):
        SearchCost.of_samples([3, -2], scored=True)
