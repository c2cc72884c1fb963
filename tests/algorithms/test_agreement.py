"""`logprob_gap` against hand-computed values."""

import pytest
import torch

from rlhf.algorithms.agreement import logprob_gap


def test_gap_over_valid_tokens_only():
    a = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 9.0]])
    b = torch.tensor([[-1.5, -2.0, -1.0], [-0.25, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    mean, worst = logprob_gap(a, b, mask)
    # valid gaps: 0.5, 0, 2, 0.25, 0 (the 9 on padding is ignored)
    assert mean.item() == pytest.approx(2.75 / 5)
    assert worst.item() == pytest.approx(2.0)


def test_gap_is_symmetric_and_zero_without_valid_tokens():
    a, b = torch.randn(2, 4), torch.randn(2, 4)
    mask = torch.ones(2, 4, dtype=torch.long)
    assert torch.equal(torch.stack(logprob_gap(a, b, mask)), torch.stack(logprob_gap(b, a, mask)))
    mean, worst = logprob_gap(a, b, torch.zeros(2, 4))
    assert mean.item() == 0.0 and worst.item() == 0.0


def test_gap_checks_shapes():
    with pytest.raises(AssertionError):
        logprob_gap(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3))
