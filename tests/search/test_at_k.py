"""Search strategies at k samples judged on n >= k samples (`rlhf.search.at_k`): the closed form
of best-of-k and the subset mean of the weighted vote against brute force over every k-subset."""

import itertools
import random

import pytest
import torch

from rlhf.search.at_k import best_of_k, mean_search_at_k, weighted_vote_at_k
from rlhf.search.best_of_n import best_of_n
from rlhf.search.vote import weighted_vote


def brute_best_of_k(scores, correct, k):
    subsets = list(itertools.combinations(range(len(scores)), k))
    wins = 0
    for subset in subsets:
        chosen = best_of_n(list(subset), [scores[i] for i in subset], token_counts=[0] * k).candidate
        wins += correct[chosen]
    return wins / len(subsets)


def test_best_of_k_hand_worked():
    scores, correct = [0.9, 0.5, 0.7], [False, True, True]
    assert best_of_k(scores, correct, 1) == pytest.approx(2 / 3)  # one random sample: the share correct
    assert best_of_k(scores, correct, 2) == pytest.approx(1 / 3)  # only {1, 2} avoids the wrong top sample
    assert best_of_k(scores, correct, 3) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_best_of_k_equals_brute_force_with_ties(seed):
    rng = random.Random(seed)
    n = 7
    scores = [rng.choice([0.1, 0.4, 0.4, 0.8]) for _ in range(n)]  # ties: the earlier sample wins
    correct = [rng.random() < 0.5 for _ in range(n)]
    for k in range(1, n + 1):
        assert best_of_k(scores, correct, k) == pytest.approx(brute_best_of_k(scores, correct, k))


def test_weighted_vote_at_k_enumerates_small_cases_exactly():
    answers = ["18", "18", "20", None, "20"]
    weights = [0.2, 0.3, 0.9, 0.5, 0.1]
    correct = [False, False, True, False, True]
    for k in range(1, 6):
        subsets = list(itertools.combinations(range(5), k))
        expected = sum(correct[s[weighted_vote([answers[i] for i in s], [weights[i] for i in s], token_counts=[0] * k).index]]
                       and weighted_vote([answers[i] for i in s], [weights[i] for i in s], token_counts=[0] * k).answer is not None
                       for s in subsets) / len(subsets)
        assert weighted_vote_at_k(answers, weights, correct, k, torch.Generator().manual_seed(0)) == pytest.approx(expected)
    # all five: the weighted winner (20: 1.0) beats the plain majority's tie-break
    assert weighted_vote_at_k(answers, weights, correct, 5, torch.Generator()) == 1.0


def test_weighted_vote_at_k_samples_subsets_with_its_seed_when_there_are_many():
    rng = random.Random(0)
    n, k = 16, 6  # C(16, 6) = 8008 subsets: 256 drawn
    answers = [rng.choice(["1", "2", "3"]) for _ in range(n)]
    weights = [rng.random() for _ in range(n)]
    correct = [answer == "2" for answer in answers]
    first = weighted_vote_at_k(answers, weights, correct, k, torch.Generator().manual_seed(5))
    assert first == weighted_vote_at_k(answers, weights, correct, k, torch.Generator().manual_seed(5))
    exact = weighted_vote_at_k(answers, weights, correct, k, torch.Generator(), max_subsets=10_000)
    assert abs(first - exact) < 0.1  # 256 draws: standard error < 0.032


def test_mean_over_problems_and_errors():
    scores = torch.tensor([[0.9, 0.5, 0.7], [0.1, 0.2, 0.3]])
    correct = torch.tensor([[False, True, True], [True, True, True]])
    answers = [["1", "2", "2"], ["5", "5", "5"]]
    assert mean_search_at_k("best_of_n", answers, scores, scores, correct, 2) == pytest.approx((1 / 3 + 1) / 2)
    assert mean_search_at_k("weighted_vote", answers, scores, scores, correct, 3) == pytest.approx(1.0)  # 2: 1.2 beats 1: 0.9
    with pytest.raises(ValueError, match="no estimator at k for search strategy 'step_beam'"):
        mean_search_at_k("step_beam", answers, scores, scores, correct, 2)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        best_of_k([0.1, 0.2], [True, False], 3)
