"""Chunked log-probabilities / entropy from logits, and the KL estimators."""

import math

import pytest
import torch

import rlhf.algorithms.logprobs as logprobs_module
from rlhf.algorithms.kl import KL_ESTIMATORS, kl_estimate
from rlhf.algorithms.logprobs import entropy_from_logits, logprobs_from_logits


def reference_logprobs(logits, labels):
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None]).squeeze(-1)


def reference_entropy(logits):
    probs = torch.softmax(logits.float(), dim=-1)
    return -(probs * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)


def random_logits(*shape, seed=0, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator) * scale


def test_logprobs_by_hand():
    # logits [0, ln 3] -> probabilities 1/4, 3/4
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert logprobs_from_logits(logits, torch.tensor([0])).tolist() == pytest.approx([math.log(0.25)])
    assert logprobs_from_logits(logits, torch.tensor([1])).tolist() == pytest.approx([math.log(0.75)])


def test_entropy_by_hand():
    uniform = torch.zeros(1, 8)
    assert entropy_from_logits(uniform).item() == pytest.approx(math.log(8))
    quarter = torch.tensor([[0.0, math.log(3.0)]])
    assert entropy_from_logits(quarter).item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    peaked = torch.tensor([[0.0, 1000.0, 0.0]])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)


def test_logprobs_match_log_softmax_gather():
    logits = random_logits(3, 5, 11)
    labels = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    out = logprobs_from_logits(logits, labels)
    assert out.shape == (3, 5) and out.dtype == torch.float32
    assert torch.allclose(out, reference_logprobs(logits, labels), atol=1e-6)


def test_entropy_matches_definition():
    logits = random_logits(2, 4, 9)
    out = entropy_from_logits(logits)
    assert out.shape == (2, 4) and out.dtype == torch.float32
    assert torch.allclose(out, reference_entropy(logits), atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_chunk_boundaries(monkeypatch, chunk):
    monkeypatch.setattr(logprobs_module, "CHUNK_TOKENS", chunk)
    logits = random_logits(4, 5, 13, seed=2)  # 20 tokens: chunks of 3 and 7 leave a partial tail
    labels = torch.randint(0, 13, (4, 5), generator=torch.Generator().manual_seed(3))
    assert torch.allclose(logprobs_from_logits(logits, labels), reference_logprobs(logits, labels), atol=1e-6)
    assert torch.allclose(entropy_from_logits(logits), reference_entropy(logits), atol=1e-5)


def test_bfloat16_logits_are_computed_in_float32():
    logits = random_logits(2, 3, 7, seed=4).to(torch.bfloat16)
    labels = torch.tensor([[0, 1, 2], [3, 4, 5]])
    out = logprobs_from_logits(logits, labels)
    assert out.dtype == torch.float32
    assert torch.allclose(out, reference_logprobs(logits, labels), atol=1e-6)
    assert entropy_from_logits(logits).dtype == torch.float32


def test_empty_input():
    logits = torch.zeros(2, 0, 5)
    labels = torch.zeros(2, 0, dtype=torch.long)
    assert logprobs_from_logits(logits, labels).shape == (2, 0)
    assert entropy_from_logits(logits).shape == (2, 0)


def test_logprobs_gradient_matches_reference():
    logits = random_logits(2, 3, 6, seed=5).requires_grad_(True)
    labels = torch.tensor([[0, 5, 2], [1, 1, 4]])
    logprobs_from_logits(logits, labels).sum().backward()
    ours = logits.grad.clone()
    logits.grad = None
    reference_logprobs(logits, labels).sum().backward()
    assert torch.allclose(ours, logits.grad, atol=1e-6)


# ---- KL estimators -----------------------------------------------------------------------

LP = torch.tensor([[-1.0, -2.0, -0.5]])
REF = torch.tensor([[-1.5, -1.0, -0.5]])
# log ratio lp - ref = [0.5, -1.0, 0.0]


def test_k1():
    assert kl_estimate(LP, REF, "k1")[0].tolist() == pytest.approx([0.5, -1.0, 0.0])


def test_abs():
    assert kl_estimate(LP, REF, "abs")[0].tolist() == pytest.approx([0.5, 1.0, 0.0])


def test_k2():
    assert kl_estimate(LP, REF, "k2")[0].tolist() == pytest.approx([0.125, 0.5, 0.0])


@pytest.mark.parametrize("kind", ["k3", "low_var_kl"])
def test_k3_by_hand(kind):
    # r = ref - lp = [-0.5, 1.0, 0.0]: exp(r) - r - 1
    expected = [math.exp(-0.5) + 0.5 - 1, math.exp(1.0) - 1.0 - 1, 0.0]
    assert kl_estimate(LP, REF, kind)[0].tolist() == pytest.approx(expected)


def test_k3_is_nonnegative():
    generator = torch.Generator().manual_seed(0)
    lp = torch.randn(8, 16, generator=generator) * 4
    ref = torch.randn(8, 16, generator=generator) * 4
    assert (kl_estimate(lp, ref, "k3") >= 0).all()


def test_k3_clamps():
    # ref - lp = 30 would give exp(30); clamped to exp(20) - 20 - 1 and then to 10
    assert kl_estimate(torch.tensor([-30.0]), torch.tensor([0.0]), "k3").item() == 10.0
    # ref - lp = -50: exponent clamped at -20 -> exp(-20) + 20 - 1 ≈ 19 -> clamped to 10
    assert kl_estimate(torch.tensor([0.0]), torch.tensor([-50.0]), "k3").item() == 10.0
    # in range: ref - lp = -5 -> exp(-5) + 4, below the clamp
    assert kl_estimate(torch.tensor([0.0]), torch.tensor([-5.0]), "k3").item() == pytest.approx(math.exp(-5) + 4)


def test_k3_finite_for_infinite_gaps():
    out = kl_estimate(torch.tensor([0.0, -1e9]), torch.tensor([-1e9, 0.0]), "k3")
    assert torch.isfinite(out).all()


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'.*k1.*k3"):
        kl_estimate(LP, REF, "k4")
    assert set(KL_ESTIMATORS) == {"k1", "abs", "k2", "k3", "low_var_kl"}
