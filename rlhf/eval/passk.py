"""Sample-based accuracy estimators: pass@k and maj@k from n >= k samples per prompt (pure math).

Notation: N prompts, n samples per prompt, c correct samples of one prompt, k the budget.

Both estimators are unbiased for "draw k fresh samples" and use all n samples, which gives a
lower variance than scoring only the first k (the U-statistic over every k-subset of the n).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one prompt: 1 - C(n-c, k) / C(n, k), the chance that a random
    k-subset of the n samples holds at least one of the c correct ones.

    Chen et al. 2021 ("Evaluating Large Language Models Trained on Code", eq. 1 and fig. 3):
    the product form 1 - Π_{i=n-c+1}^{n} (1 - k/i) avoids the huge binomials.
    """
    if not 1 <= k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_pass_at_k(correct: torch.Tensor, k: int) -> float:
    """pass@k averaged over prompts.

    Args:
        correct: [N, n] bool, whether each sample of each prompt is correct.
    """
    assert correct.dim() == 2 and correct.shape[0] > 0, tuple(correct.shape)
    n = correct.shape[1]
    return sum(pass_at_k(n, int(c), k) for c in correct.sum(dim=1).tolist()) / correct.shape[0]


def maj_at_k(class_sizes: Sequence[int], class_correct: Sequence[bool], abstentions: int, k: int) -> float:
    """Unbiased maj@k of one prompt: the expected accuracy of a majority vote over a uniformly
    random k-subset of its n samples.

    The samples fall into answer classes (samples with equal final answers) plus abstentions
    (samples without an answer, which do not vote). The vote picks the class with the most
    samples in the subset; a tie among t classes earns (correct classes among them) / t, the
    expectation of breaking the tie at random; a subset of abstentions only earns 0.
    Majority voting (self-consistency) is Wang et al. 2023 ("Self-Consistency Improves Chain of
    Thought Reasoning in Language Models"); averaging over all k-subsets instead of voting
    over the first k is our choice (lower variance, still unbiased).

    Computed exactly (no enumeration of the C(n, k) subsets): include each sample
    independently with p = k/n; conditioned on k samples being included the subset is uniform,
    so maj@k = P(vote correct and k included) / P(Binomial(n, p) = k). The joint probability is
    a dynamic programme over classes, for each correct class c and each count a >= 1 of its
    samples: every other class gets at most a, and the t classes with exactly a share the credit.
    Cost O(Σ_c Σ_a (n + classes) · k · k/a) for the correct classes c.

    Args:
        class_sizes: samples per answer class.
        class_correct: whether each class's answer is correct (same length).
        abstentions: samples without an answer.
        k: the vote's budget, 1 <= k <= n.
    """
    n = sum(class_sizes) + abstentions
    if len(class_sizes) != len(class_correct) or not 1 <= k <= n:
        raise ValueError(f"maj@k needs one verdict per class and 1 <= k <= n, got {len(class_sizes)} classes, "
                         f"{len(class_correct)} verdicts, n={n}, k={k}")
    p = k / n
    pmfs = {size: binomial_pmf(size, p) for size in {*class_sizes, abstentions}}  # P(i of a class included)
    joint = 0.0
    for c, (size_c, correct) in enumerate(zip(class_sizes, class_correct)):
        if not correct:
            continue
        others = [pmfs[size] for j, size in enumerate(class_sizes) if j != c and size > 0]
        for a in range(1, min(k, size_c) + 1):
            by_ties = _others_capped(others, pmfs[abstentions], a, k - a)
            joint += pmfs[size_c][a] * sum(weight / (1 + ties) for ties, weight in enumerate(by_ties))
    return min(1.0, joint / binomial_pmf(n, p)[k])


def _others_capped(others: Sequence[np.ndarray], abstentions: np.ndarray, cap: int, picked: int) -> np.ndarray:
    """[T+1]: P(the other classes and the abstentions together include exactly `picked`
    samples, every other class at most `cap`, and exactly t classes `cap`) for t = 0..T.

    Args:
        others: each other class's [size+1] inclusion probabilities (:func:`binomial_pmf`).
        abstentions: the abstentions' [count+1] inclusion probabilities.
    """
    max_ties = min(len(others), picked // cap)
    # state[r, t]: probability of r samples included so far with t classes at the cap
    state = np.zeros((picked + 1, max_ties + 1))
    state[0, 0] = 1.0
    for pmf, is_class in [*((pmf, True) for pmf in others), (abstentions, False)]:
        update = np.zeros_like(state)
        for i in range(min(len(pmf) - 1, cap if is_class else picked, picked) + 1):
            if i == cap and is_class:  # this class ties with the candidate
                update[i:, 1:] += pmf[i] * state[: picked + 1 - i, :-1]
            else:
                update[i:, :] += pmf[i] * state[: picked + 1 - i, :]
        state = update
    return state[picked]


def binomial_pmf(m: int, p: float) -> np.ndarray:
    """[m+1] float64: P(Binomial(m, p) = i) for i = 0..m, via log-gamma (no overflow for large m)."""
    if p >= 1.0:
        pmf = np.zeros(m + 1)
        pmf[m] = 1.0
        return pmf
    i = np.arange(m + 1)
    log_comb = math.lgamma(m + 1) - np.array([math.lgamma(j + 1) + math.lgamma(m - j + 1) for j in range(m + 1)])
    return np.exp(log_comb + i * math.log(p) + (m - i) * math.log1p(-p))


def sample_budgets(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself: the points of an inference-scaling curve."""
    if n < 1:
        raise ValueError(f"need n >= 1 samples, got {n}")
    budgets = [2**i for i in range(n.bit_length()) if 2**i <= n]
    return budgets if budgets[-1] == n else [*budgets, n]
