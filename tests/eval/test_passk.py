"""pass@k and maj@k estimators: hand-computed values, properties, and agreement with brute force
over every k-subset."""

import itertools
import math
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.eval.passk import binomial_pmf, maj_at_k, mean_pass_at_k, pass_at_k, sample_budgets
from rlhf.eval.voting import ballots


def test_pass_at_k_hand_computed():
    # n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=10, c=3, k=4: 1 - C(7,4)/C(10,4) = 1 - 35/210
    assert pass_at_k(10, 3, 4) == pytest.approx(1 - 35 / 210)
    assert pass_at_k(3, 2, 2) == 1.0  # n - c < k: every pair holds a correct sample
    # large n stays exact where the binomials would overflow a float
    assert pass_at_k(2000, 1, 1000) == pytest.approx(0.5)


def test_mean_pass_at_k_averages_prompts():
    correct = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    assert mean_pass_at_k(correct, 1) == pytest.approx((0.25 + 1 + 0) / 3)
    assert mean_pass_at_k(correct, 2) == pytest.approx((0.5 + 1 + 0) / 3)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))))
def test_pass_at_k_properties(n_c):
    n, c = n_c
    values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
    assert values[0] == pytest.approx(c / n)
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(values))  # monotone in k
    assert (values[-1] == 1.0) == (c > 0)  # pass@n: some sample is correct
    for k in range(1, n + 1):  # the closed form with exact binomials
        assert values[k - 1] == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_k_rejects_bad_arguments():
    for n, c, k in ((4, 1, 0), (4, 1, 5), (4, 5, 2)):
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)


def brute_force_maj_at_k(answers, correct_answers, k):
    """Majority vote over every k-subset; ties split the credit; no answers earn 0."""
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for subset in subsets:
        votes = Counter(answers[i] for i in subset if answers[i] is not None)
        if votes:
            top = max(votes.values())
            tied = [answer for answer, count in votes.items() if count == top]
            total += sum(answer in correct_answers for answer in tied) / len(tied)
    return total / len(subsets)


def test_maj_at_k_hand_computed():
    # answers a a b, a correct: k=1 -> 2/3; k=2 -> pairs {aa: 1, ab: 1/2, ab: 1/2} -> 2/3; k=3 -> 1
    assert maj_at_k([2, 1], [True, False], 0, 1) == pytest.approx(2 / 3)
    assert maj_at_k([2, 1], [True, False], 0, 2) == pytest.approx(2 / 3)
    assert maj_at_k([2, 1], [True, False], 0, 3) == pytest.approx(1.0)
    # a b b with one abstention, a correct, k=4: b wins 2-1
    assert maj_at_k([1, 2], [True, False], 1, 4) == 0.0
    # only abstentions and a correct singleton: k=1 -> 1/3
    assert maj_at_k([1], [True], 2, 1) == pytest.approx(1 / 3)
    # a d b d + one abstention, b correct, k=2: b+a 1/2, b+none 1, b+d 1/2 twice -> 2.5 / C(5,2);
    # the abstentions are as many as the class a: they still must not vote
    assert maj_at_k([1, 2, 1], [False, False, True], 1, 2) == pytest.approx(0.25)
    # no correct class
    assert maj_at_k([3, 2], [False, False], 0, 2) == 0.0


answers_strategy = st.lists(st.sampled_from([None, "a", "b", "c", "d"]), min_size=1, max_size=9)


@settings(max_examples=150, deadline=None)
@given(answers_strategy, st.sets(st.sampled_from(["a", "b", "c", "d"])), st.data())
def test_maj_at_k_equals_brute_force(answers, correct_answers, data):
    k = data.draw(st.integers(1, len(answers)))
    grouped = ballots(answers, [a in correct_answers for a in answers])
    exact = brute_force_maj_at_k(answers, correct_answers, k)
    assert maj_at_k(grouped.class_sizes, grouped.class_correct, grouped.abstentions, k) == pytest.approx(exact, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(answers_strategy, st.sets(st.sampled_from(["a", "b", "c", "d"])))
def test_maj_at_k_properties(answers, correct_answers):
    correct = [a in correct_answers for a in answers]
    grouped = ballots(answers, correct)
    n, c = len(answers), sum(correct)
    values = [maj_at_k(grouped.class_sizes, grouped.class_correct, grouped.abstentions, k) for k in range(1, n + 1)]
    assert values[0] == pytest.approx(c / n)  # a vote of one is one sample
    assert all(-1e-12 <= v <= 1 + 1e-12 for v in values)
    # a correct majority needs a correct sample in the subset
    assert all(v <= pass_at_k(n, c, k) + 1e-9 for k, v in enumerate(values, start=1))


def test_maj_at_k_large_n_does_not_overflow():
    # 600 vs 400 of 1000 samples: the bigger class wins almost every vote of 512
    assert maj_at_k([600, 400], [True, False], 0, 512) == pytest.approx(1.0, abs=1e-6)
    assert maj_at_k([600, 400], [False, True], 0, 512) == pytest.approx(0.0, abs=1e-6)
    assert binomial_pmf(3000, 0.5).sum() == pytest.approx(1.0)


def test_sample_budgets():
    assert sample_budgets(1) == [1]
    assert sample_budgets(8) == [1, 2, 4, 8]
    assert sample_budgets(12) == [1, 2, 4, 8, 12]
