"""Clip / Delta / Clip-Delta refinement of process rewards (Gao et al. 2024): values by hand,
and the point of it: a PRM that likes every step cannot be farmed by writing more steps."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rlhf.algorithms.refinement import REFINEMENTS, clip, clip_delta, delta, no_refinement, place_step_rewards, refine


def test_clip_by_hand():
    # eta 0.5: 0.9 -> min(0.4, 0) = 0; 0.2 -> -0.3; 0.5 -> 0
    assert clip(torch.tensor([0.9, 0.2, 0.5]), 0.5).tolist() == pytest.approx([0.0, -0.3, 0.0])


def test_delta_by_hand():
    # s = [0.9, 0.6, 0.8, 0.7]: r1 = 0.9-0.6 = 0.3, r2 = 0.6-0.8 = -0.2, r3 = s3 = 0.8, r4 = 0
    rewards = delta(torch.tensor([0.9, 0.6, 0.8, 0.7]))
    assert rewards.tolist() == pytest.approx([0.3, -0.2, 0.8, 0.0])
    # the return from step k telescopes to s_k (k <= K-1)
    returns = rewards.flip(0).cumsum(0).flip(0)
    assert returns[:3].tolist() == pytest.approx([0.9, 0.6, 0.8])


def test_delta_short_responses():
    assert delta(torch.tensor([0.7])).tolist() == [0.0]  # the only step is the last one
    assert delta(torch.tensor([0.7, 0.1])).tolist() == pytest.approx([0.7, 0.0])
    assert delta(torch.tensor([])).numel() == 0


def test_clip_delta_by_hand():
    # eta 0.5: clipped = [0, -0.3, 0, -0.1]; delta: [0-(-0.3), -0.3-0, 0, 0] = [0.3, -0.3, 0, 0]
    rewards = clip_delta(torch.tensor([0.9, 0.2, 0.6, 0.4]), 0.5)
    assert rewards.tolist() == pytest.approx([0.3, -0.3, 0.0, 0.0])


def test_refine_dispatch_and_unknown_name():
    scores = torch.tensor([0.9, 0.2, 0.6])
    assert torch.equal(refine(scores, "none"), scores)
    assert torch.equal(refine(scores, "clip", 0.5), clip(scores, 0.5))
    assert torch.equal(refine(scores, "delta"), delta(scores))
    assert torch.equal(refine(scores, "clip_delta", 0.5), clip_delta(scores, 0.5))
    assert set(REFINEMENTS) == {"none", "clip", "delta", "clip_delta"}
    with pytest.raises(ValueError, match="valid: none, clip, delta, clip_delta"):
        refine(scores, "clipp")


def test_no_refinement_returns_a_copy():
    scores = torch.tensor([0.5, 0.5])
    out = no_refinement(scores)
    out[0] = 9.0
    assert scores[0] == 0.5


def test_place_step_rewards_on_step_ends():
    placed = place_step_rewards([torch.tensor([0.3, -0.2]), torch.tensor([])], [torch.tensor([1, 4]), torch.tensor([], dtype=torch.long)], 6)
    assert torch.allclose(placed, torch.tensor([[0, 0.3, 0, 0, -0.2, 0], [0.0] * 6]))


HIGH_SCORES = st.lists(st.floats(0.9, 1.0), min_size=1, max_size=200)


@settings(max_examples=50, deadline=None)
@given(HIGH_SCORES, st.floats(0.0, 1.0))
def test_refined_process_return_is_bounded_whatever_the_step_count(scores, eta):
    """A PRM scoring every step >= 0.9: the raw return grows with K (the hack); refined returns
    stay within one score of 0 for any K."""
    s = torch.tensor(scores, dtype=torch.float64)
    assert no_refinement(s).sum() >= 0.9 * len(scores) - 1e-9  # grows linearly with K
    assert clip(s, eta).sum() <= 0.0  # never positive
    assert clip(s, eta).sum() >= min(0.0, 0.9 - eta) * len(scores) - 1e-9
    assert abs(delta(s).sum()) <= 1.0 + 1e-9  # telescopes to s_1 (or 0 for K = 1)
    assert -1.0 - 1e-9 <= clip_delta(s, eta).sum() <= 0.0 + 1e-9


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=50), st.floats(0.0, 1.0))
def test_delta_return_from_every_step_telescopes(scores, eta):
    for refined, base in ((delta(torch.tensor(scores, dtype=torch.float64)), torch.tensor(scores, dtype=torch.float64)),
                          (clip_delta(torch.tensor(scores, dtype=torch.float64), eta), clip(torch.tensor(scores, dtype=torch.float64), eta))):
        returns = refined.flip(0).cumsum(0).flip(0)
        assert torch.allclose(returns[:-1], base[:-1])
        assert returns[-1] == 0.0
