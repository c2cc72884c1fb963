"""DAPO's soft overlong punishment (Yu et al. 2025, eq. 13)."""

import pytest
import torch

from rlhf.algorithms.shaping import overlong_penalty


def test_three_regions_by_hand():
    # max_length 10, buffer 4: free up to 10 - 4 = 6, then (6 - |y|)/4, then -1 beyond 10
    lengths = torch.tensor([0, 6, 7, 8, 9, 10, 11, 100])
    expected = [0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0, -1.0]
    out = overlong_penalty(lengths, max_length=10, buffer_length=4)
    assert out.dtype == torch.float32 and out.shape == (8,)
    assert out.tolist() == pytest.approx(expected)


def test_penalty_scales_and_float_lengths():
    # (6 - 7.5)/4 · 0.5 = -0.1875; beyond max_length: -0.5
    out = overlong_penalty(torch.tensor([5.5, 7.5, 12.0], dtype=torch.float64), 10, 4, penalty=0.5)
    assert out.dtype == torch.float32
    assert out.tolist() == pytest.approx([0.0, -0.1875, -0.5])


def test_buffer_of_one_is_a_step_at_max_length():
    # threshold 9: length 10 gets (9 - 10)/1 = -1, the full penalty
    assert overlong_penalty(torch.tensor([9, 10, 11]), 10, 1).tolist() == pytest.approx([0.0, -1.0, -1.0])


def test_non_increasing_in_length():
    out = overlong_penalty(torch.arange(0, 40), max_length=30, buffer_length=8)
    assert (out[1:] <= out[:-1]).all()


@pytest.mark.parametrize("buffer_length", [0, -3])
def test_rejects_empty_buffer(buffer_length):
    with pytest.raises(ValueError, match="buffer_length"):
        overlong_penalty(torch.tensor([5]), 10, buffer_length)
