"""Plain and weighted majority votes on hand-worked examples: the weighted winner differs from
the plain majority, ties, abstentions, the cost."""

import pytest

from rlhf.eval.voting import answer_key
from rlhf.search.cost import SearchCost
from rlhf.search.vote import majority_vote, weighted_vote

RESPONSES = ["so #### 18", "The answer is $18.", "\\boxed{20}", "I think 18"]
ANSWERS = [answer_key(text) for text in RESPONSES]  # 18, 18, 20, 18


def test_the_weighted_winner_differs_from_the_plain_majority():
    assert ANSWERS == ["18", "18", "20", "18"]
    plain = majority_vote(ANSWERS, token_counts=[5, 6, 7, 8])
    assert (plain.answer, plain.index, plain.weight) == ("18", 0, 3.0)
    assert plain.cost == SearchCost(samples=4, generated_tokens=26, scored=0, rounds=1)
    weighted = weighted_vote(ANSWERS, [0.2, 0.3, 0.9, 0.1], token_counts=[5, 6, 7, 8])  # 18: 0.6, 20: 0.9
    assert (weighted.answer, weighted.index, weighted.weight) == ("20", 2, 0.9)
    assert weighted.cost == SearchCost(samples=4, generated_tokens=26, scored=4, rounds=1)


def test_prm_weights_go_through_the_aggregation():
    steps = [[0.1, 0.9], [0.1, 0.9], [0.5, 0.5]]
    answers = ["1", "1", "2"]
    expected = {"min": "2", "product": "2", "last": "1", "mean": "1"}  # 1: 0.2, 0.18, 1.8, 1.0; 2: 0.5, 0.25, 0.5, 0.5
    assert {how: weighted_vote(answers, steps, token_counts=[1, 1, 1], how=how).answer for how in expected} == expected


def test_the_representative_is_the_winners_highest_weighted_member():
    vote = weighted_vote(["7", "5", "7", "7"], [0.1, 0.5, 0.4, 0.3], token_counts=[1] * 4)
    assert (vote.answer, vote.index) == ("7", 2)
    assert vote.weight == pytest.approx(0.8)


def test_ties_break_by_votes_then_by_first_appearance():
    assert weighted_vote(["5", "7"], [0.5, 0.5], token_counts=[1, 1]).answer == "5"
    assert weighted_vote(["7", "5"], [0.5, 0.5], token_counts=[1, 1]).answer == "7"
    more_votes = weighted_vote(["7", "5", "5"], [0.5, 0.25, 0.25], token_counts=[1, 1, 1])
    assert (more_votes.answer, more_votes.index) == ("5", 1)
    assert majority_vote(["3", "4", "4", "3"], token_counts=[1] * 4).answer == "3"


def test_totals_do_not_depend_on_the_order_of_the_responses():
    # summed left to right, 0.1 + 0.2 + 0.3 is 0.6000000000000001 but 0.3 + 0.2 + 0.1 is 0.6
    for weights in ([0.6, 0.1, 0.2, 0.3], [0.6, 0.3, 0.2, 0.1]):
        vote = weighted_vote(["a", "b", "b", "b"], weights, token_counts=[1] * 4)
        assert (vote.answer, vote.weight) == ("b", 0.6)  # a tie in weight, won on votes


def test_abstentions_never_win_unless_everyone_abstains():
    vote = weighted_vote([None, None, "3"], [0.9, 0.9, 0.1], token_counts=[1, 1, 1])
    assert (vote.answer, vote.index) == ("3", 2)
    assert weighted_vote(["3", None], [0.0, 0.9], token_counts=[1, 1]).answer == "3"  # even with weight 0
    nobody = weighted_vote([None, None, None], [0.2, 0.5, 0.5], token_counts=[1, 1, 1])
    assert (nobody.answer, nobody.index, nobody.weight) == (None, 1, 0.0)
    assert majority_vote([answer_key("no number"), None], token_counts=[1, 1]).index == 0


@pytest.mark.parametrize("answers, weights, counts, message", [
    ([], [], [], "at least one response"),
    (["1", "2"], [0.5], [1, 1], "weights has 1 entries for 2 answers"),
    (["1", "2"], [0.5, 0.5], [1], "token_counts has 1 entries for 2 answers"),
    (["1", "2"], [0.5, -0.1], [1, 1], "the weight of response 1 is -0.1; weights must be >= 0"),
])
def test_bad_inputs_are_named(answers, weights, counts, message):
    with pytest.raises(ValueError, match=message):
        weighted_vote(answers, weights, token_counts=counts)
