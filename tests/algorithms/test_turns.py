"""Turn-level credit (rlhf.algorithms.turns): hand-computed values, a loop reference, the
registered `turn_rloo` estimator, and a brute-force proof of unbiasedness on tiny episodic MDPs
whose episodes have different numbers of turns (every joint outcome of a group enumerated)."""

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS, compute_advantages, estimator
from rlhf.algorithms.turns import spread_over_tokens, turn_advantages, turn_baseline, turn_returns, turn_rloo

# ---- hand-computed values ----------------------------------------------------------------


def test_turn_returns_by_hand():
    # gamma 0.5: row 0 G2 = 3, G1 = 2 + 1.5, G0 = 1 + 0.5 * 3.5; row 1 has two turns, the 9 is padding
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    assert turn_returns(rewards, mask, 0.5).tolist() == [[2.75, 3.5, 3.0], [6.5, 5.0, 0.0]]
    assert turn_returns(rewards, mask, 1.0).tolist() == [[6.0, 5.0, 3.0], [9.0, 5.0, 0.0]]


def test_turn_returns_keeps_float64_and_promotes_integers():
    mask = torch.ones(1, 2)
    assert turn_returns(torch.ones(1, 2, dtype=torch.float64), mask, 1.0).dtype == torch.float64
    assert turn_returns(torch.ones(1, 2, dtype=torch.long), mask, 1.0).dtype == torch.float32


# Group "a" has three episodes of 3, 1 and 2 turns; group "b" one episode of 2 turns. Padded
# returns hold 100, which must be ignored.
RETURNS = torch.tensor([[3.0, 2.0, 1.0], [7.0, 8.0, 100.0], [5.0, 100.0, 100.0], [4.0, 6.0, 100.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
LABELS = ["a", "b", "a", "a"]


def test_turn_baseline_with_different_numbers_of_turns_by_hand():
    expected = [
        [4.5, 6.0, 6.0],  # others at turn 0: 5, 4; at turn 1 only the 2-turn episode (6); turn 2: none, carried
        [0.0, 0.0, 0.0],  # alone in its group: no other episode, baseline 0
        [3.5, 0.0, 0.0],  # others at turn 0: 3, 4; its later turns are padding
        [4.0, 2.0, 0.0],  # others at turn 0: 3, 5; at turn 1 only the 3-turn episode (2)
    ]
    assert turn_baseline(RETURNS, MASK, LABELS).tolist() == expected
    assert turn_baseline(RETURNS, MASK, torch.tensor([0, 1, 0, 0])).tolist() == expected
    # non-finite values under the mask stay out of the other episodes' sums
    poisoned = torch.where(MASK.bool(), RETURNS, torch.tensor(float("nan")))
    assert turn_baseline(poisoned, MASK, LABELS).tolist() == expected


def test_turn_advantages_by_hand():
    # gamma 1: A = G - b with the baseline above; padding is 0
    advantages, returns = turn_advantages(torch.ones(4, 3), MASK, LABELS, 1.0)
    # rewards all 1 -> G = number of turns left: [3,2,1], [2,1,-], [1,-,-], [2,1,-]
    assert returns.tolist() == [[3.0, 2.0, 1.0], [2.0, 1.0, 0.0], [1.0, 0.0, 0.0], [2.0, 1.0, 0.0]]
    assert advantages.tolist() == [[1.5, 1.0, 0.0], [2.0, 1.0, 0.0], [-1.5, 0.0, 0.0], [0.0, -1.0, 0.0]]


def test_turn_advantages_carry_the_discount_of_their_turn():
    # one group, episodes of 2 and 1 turns, gamma 0.5: G = [1.0, 1.0] and [0.25];
    # b = [0.25, 0.25 (carried)] and [1.0]; A = 0.5^k (G - b)
    rewards = torch.tensor([[0.5, 1.0], [0.25, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    advantages, returns = turn_advantages(rewards, mask, [0, 0], 0.5)
    assert returns.tolist() == [[1.0, 1.0], [0.25, 0.0]]
    assert advantages.tolist() == [[0.75, 0.375], [-0.75, 0.0]]


def test_spread_over_tokens_by_hand():
    values = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    turn_index = torch.tensor([[0, 0, -1, -1, 1, 1, -1], [0, -1, 1, -1, -1, -1, -1]])
    # row 0's last action token is masked out (say, an EOS the policy did not generate)
    action_mask = torch.tensor([[1, 1, 0, 0, 1, 0, 0], [1, 0, 1, 0, 0, 0, 0]])
    assert spread_over_tokens(values, turn_index, action_mask).tolist() == [
        [10.0, 10.0, 0.0, 0.0, 20.0, 0.0, 0.0],
        [30.0, 0.0, 40.0, 0.0, 0.0, 0.0, 0.0],
    ]


def test_shape_mismatches_name_the_tensors():
    with pytest.raises(ValueError, match=r"turn_rewards has shape \(2, 3\); turn_mask has \(2, 2\)"):
        turn_returns(torch.zeros(2, 3), torch.ones(2, 2), 1.0)
    with pytest.raises(ValueError, match="group_index has 3 labels; returns has 2 rows"):
        turn_baseline(torch.zeros(2, 2), torch.ones(2, 2), [0, 0, 1])
    with pytest.raises(ValueError, match=r"turn_index has shape \(2, 4\); action_mask has \(2, 5\)"):
        spread_over_tokens(torch.zeros(2, 2), torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5))


# ---- loop reference ----------------------------------------------------------------------


def loop_baseline(returns: list[list[float]], lengths: list[int], labels: list[int]) -> list[list[float]]:
    """Reference: for each (i, k) the mean over others of the group that reached k, else carried."""
    out = []
    for i, (label, length) in enumerate(zip(labels, lengths)):
        row, carried = [], 0.0
        for k in range(len(returns[i])):
            others = [returns[j][k] for j in range(len(labels)) if j != i and labels[j] == label and k < lengths[j]]
            carried = sum(others) / len(others) if others else carried
            row.append(carried if k < length else 0.0)
        out.append(row)
    return out


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 3), st.integers(1, 4), st.lists(st.floats(-5, 5), min_size=4, max_size=4)),
        min_size=1,
        max_size=10,
    )
)
def test_turn_baseline_matches_loop(rows):
    labels, lengths, returns = (list(column) for column in zip(*rows))
    mask = torch.tensor([[1.0 if k < n else 0.0 for k in range(4)] for n in lengths])
    got = turn_baseline(torch.tensor(returns, dtype=torch.float64), mask, labels)
    assert got.tolist() == [pytest.approx(row, abs=1e-9) for row in loop_baseline(returns, lengths, labels)]


# ---- the registered estimator --------------------------------------------------------------


def multi_turn_inputs() -> dict:
    """One group of two episodes (2 turns and 1 turn), rewards as in the discount test above.

    Episode 0: action 0 (2 tokens), an observation (2 tokens), action 1 (1 token), padding.
    Episode 1: action 0 (3 tokens), padding.
    """
    return {
        "turn_rewards": torch.tensor([[0.5, 1.0], [0.25, 0.0]]),
        "turn_mask": torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
        "turn_index": torch.tensor([[0, 0, -1, -1, 1, -1], [0, 0, 0, -1, -1, -1]]),
        "response_mask": torch.tensor([[1, 1, 0, 0, 1, 0], [1, 1, 1, 0, 0, 0]]),  # the action mask
        "group_index": ["p", "p"],
        "turn_gamma": 0.5,
        # what else the controller has: not passed on
        "scores": torch.tensor([1.5, 0.25]),
        "gamma": 1.0,
    }


def test_turn_rloo_through_compute_advantages():
    advantages, returns = compute_advantages("turn_rloo", **multi_turn_inputs())
    assert advantages.dtype == returns.dtype == torch.float32
    assert advantages.tolist() == [[0.75, 0.75, 0.0, 0.0, 0.375, 0.0], [-0.75, -0.75, -0.75, 0.0, 0.0, 0.0]]
    assert returns.tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [0.25, 0.25, 0.25, 0.0, 0.0, 0.0]]
    assert ADVANTAGE_ESTIMATORS["turn_rloo"].fn is turn_rloo


def test_turn_rloo_declares_turn_inputs():
    entry = estimator("turn_rloo")
    assert entry.inputs == ("turn_rewards", "turn_mask", "turn_index", "response_mask", "group_index", "turn_gamma")
    assert entry.needs_turns and not entry.needs_critic and not entry.needs_greedy_baseline
    assert {name for name, other in ADVANTAGE_ESTIMATORS.items() if other.needs_turns} == {"turn_rloo", "archer"}


def test_single_turn_inputs_name_what_turn_rloo_misses():
    single_turn = {"scores": torch.zeros(2), "group_index": [0, 0], "response_mask": torch.ones(2, 3), "gamma": 1.0}
    with pytest.raises(ValueError, match="'turn_rloo' needs turn_rewards, turn_mask, turn_index, turn_gamma"):
        compute_advantages("turn_rloo", **single_turn)


# ---- unbiasedness, by enumerating every joint outcome of a group ---------------------------
#
# A tiny episodic MDP whose state is the whole history (as an LLM's is): at each turn a softmax
# policy with logits theta[node] picks one of `actions` actions; each (node, action) has a reward
# and either ends the episode or is followed by one of `observations` observations drawn with
# fixed probabilities. The last allowed turn always ends. A group is N i.i.d. episodes.


class TreeMDP:
    """Every trajectory of the MDP, as tensors: K = max_turns, T trajectories."""

    def __init__(self, actions, observations, max_turns, ends, rewards, observation_probs, theta):
        self.theta = torch.tensor(theta, dtype=torch.float64).reshape(-1, actions).requires_grad_(True)
        nodes, trajectories = {(): 0}, []  # trajectories: ([(node, action, reward) per turn], env probability)

        def walk(history, steps, env_prob):
            node = nodes.setdefault(history, len(nodes))
            for action in range(actions):
                key = node * actions + action
                step = (node, action, rewards[key])
                if ends[key] or len(history) == max_turns - 1:
                    trajectories.append(([*steps, step], env_prob))
                    continue
                for observation in range(observations):
                    walk((*history, (action, observation)), [*steps, step], env_prob * observation_probs[key][observation])

        walk((), [], 1.0)

        def column(index, dtype):
            return torch.tensor([[step[index] for step in steps] + [0] * (max_turns - len(steps)) for steps, _ in trajectories], dtype=dtype)

        self.node, self.action = column(0, torch.long), column(1, torch.long)
        self.rewards = column(2, torch.float64)
        self.mask = torch.tensor([[1.0] * len(steps) + [0.0] * (max_turns - len(steps)) for steps, _ in trajectories], dtype=torch.float64)
        self.env_prob = torch.tensor([prob for _, prob in trajectories], dtype=torch.float64)

    def logp(self) -> torch.Tensor:
        """[T, K] log pi(a_k | s_k) of each trajectory's turns (0 on padding), differentiable in theta."""
        table = torch.log_softmax(self.theta, dim=-1)
        return table[self.node, self.action] * self.mask

    def prob(self) -> torch.Tensor:
        """[T] probability of each trajectory."""
        return self.logp().sum(dim=1).exp() * self.env_prob

    def exact_gradient(self, gamma: float) -> torch.Tensor:
        """grad of J = E[sum_k gamma^k r_k], by autograd through the exact expectation."""
        discount = gamma ** torch.arange(self.rewards.shape[1], dtype=torch.float64)
        objective = (self.prob() * (self.rewards * discount).sum(dim=1)).sum()
        return torch.autograd.grad(objective, self.theta)[0]

    def expected_estimate(self, group_size: int, advantage_fn) -> torch.Tensor:
        """E[1/N sum_i sum_k A_k^i grad log pi(a_k^i | s_k^i)] over every joint outcome of a group.

        advantage_fn(turn_rewards, turn_mask, group_index) -> A [rows, K]; each joint outcome is
        one group, every group is evaluated at once.
        """
        count = len(self.env_prob)
        outcomes = torch.tensor(list(itertools.product(range(count), repeat=group_size)))  # [C, N]
        rows = outcomes.reshape(-1)
        groups = torch.arange(len(outcomes)).repeat_interleave(group_size)
        advantages = advantage_fn(self.rewards[rows], self.mask[rows], groups).detach()
        weight = self.prob().detach()[outcomes].prod(dim=1)[groups]  # probability of the joint outcome
        surrogate = (weight[:, None] * advantages * self.logp()[rows]).sum() / group_size
        return torch.autograd.grad(surrogate, self.theta)[0]


@st.composite
def tree_mdps(draw):
    """A TreeMDP with 1-3 turns; sizes bounded so that a group's joint outcomes stay few."""
    actions = draw(st.integers(2, 3))
    observations = 1 if actions == 3 else draw(st.integers(1, 2))
    max_turns = draw(st.integers(1, 3))
    keys = sum((actions * observations) ** depth for depth in range(max_turns)) * actions
    ends = draw(st.lists(st.booleans(), min_size=keys, max_size=keys))
    rewards = draw(st.lists(st.sampled_from([-1.0, 0.0, 0.5, 1.0, 2.0]), min_size=keys, max_size=keys))
    split = st.floats(0.1, 0.9).map(lambda p: [p, 1 - p]) if observations == 2 else st.just([1.0])
    observation_probs = draw(st.lists(split, min_size=keys, max_size=keys))
    theta = draw(st.lists(st.floats(-2.0, 2.0), min_size=keys, max_size=keys))
    return TreeMDP(actions, observations, max_turns, ends, rewards, observation_probs, theta)


def leave_one_out(gamma):
    return lambda rewards, mask, groups: turn_advantages(rewards, mask, groups, gamma)[0]


@settings(max_examples=40, deadline=None)
@given(mdp=tree_mdps(), group_size=st.integers(2, 3), gamma=st.sampled_from([1.0, 0.9, 0.5]))
def test_turn_advantages_are_unbiased_for_episodes_of_different_lengths(mdp, group_size, gamma):
    if len(mdp.env_prob) ** group_size > 4096:  # keep the enumeration to seconds
        group_size = 2
    expected = mdp.expected_estimate(group_size, leave_one_out(gamma))
    assert torch.allclose(expected, mdp.exact_gradient(gamma), atol=1e-9, rtol=1e-6)


def test_a_group_of_one_is_plain_reinforce_and_unbiased():
    mdp = fixed_mdp()
    assert torch.allclose(mdp.expected_estimate(1, leave_one_out(0.9)), mdp.exact_gradient(0.9), atol=1e-12)


def fixed_mdp() -> TreeMDP:
    """Two actions, two turns: action 1 ends the episode at turn 0, so lengths are 1 or 2."""
    return TreeMDP(
        actions=2,
        observations=1,
        max_turns=2,
        ends=[False, True, True, True, True, True],
        rewards=[0.0, 1.0, 2.0, -1.0, 0.5, 1.0],
        observation_probs=[[1.0]] * 6,
        theta=[0.3, -0.2, 0.1, 0.4, -0.5, 0.2],
    )


def parallel(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a is a positive multiple of b (up to rounding)."""
    cosine = (a * b).sum() / (a.norm() * b.norm())
    return math.isclose(cosine.item(), 1.0, abs_tol=1e-9)


def self_inclusive(rewards, mask, groups):
    """The GRPO-style baseline: the mean at turn k over every episode of the group that reached it."""
    returns = turn_returns(rewards, mask, 1.0)
    ids = torch.as_tensor(groups)
    total = torch.zeros(int(ids.max()) + 1, mask.shape[1], dtype=returns.dtype).index_add(0, ids, returns * mask)[ids]
    reached = torch.zeros_like(total).index_add(0, ids, mask)[ids]
    return (returns - total / reached.clamp(min=1)) * mask


def per_turn_mean(rewards, mask, groups):
    """The leave-one-out advantage divided by the episode's own number of turns."""
    return turn_advantages(rewards, mask, groups, 1.0)[0] / mask.sum(dim=1, keepdim=True)


def test_the_test_has_teeth_naive_baselines_are_biased():
    mdp = fixed_mdp()
    exact = mdp.exact_gradient(1.0)
    assert parallel(mdp.expected_estimate(2, leave_one_out(1.0)), exact)
    # with equal lengths including oneself only scales by (N-1)/N; here it turns the gradient
    assert not parallel(mdp.expected_estimate(2, self_inclusive), exact)
    assert not parallel(mdp.expected_estimate(3, self_inclusive), exact)
    # a normaliser read from the episode's own length is biased even with the unbiased baseline
    assert not parallel(mdp.expected_estimate(2, per_turn_mean), exact)
